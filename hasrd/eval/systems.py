"""Systems under test: one small interface for hasrd models, classic codecs and neural baselines.

A :class:`System` turns a waveform into the waveform a listener would hear after coding, and
says how many bytes crossed the channel. The evaluator treats every system alike; the original
audio itself is the :class:`ReferenceSystem` (the ceiling).

Baseline specs (``--baselines``), comma-separated:

    codec2:MODE        Debian ``c2enc``/``c2dec``; MODE in 3200 2400 1600 1400 1300 1200 700C 450
    opus:BPS           ``opusenc``/``opusdec`` (VBR, target BPS bit/s, 6000 and up)
    encodec:BPS[@W]    Meta's EnCodec 24 kHz at 1500/3000/6000/12000/24000 bit/s; W = local
                       ``encodec_24khz-d7cc33bc.th`` (else torch's hub cache is looked at)
    dac:BPS[@W]        Descript Audio Codec; W = a local ``.pth`` from DAC's releases (else
                       ``~/.cache/descript/dac`` is looked at); BPS like 6000, 6k or 8kbps picks
                       the largest number of codebooks whose bitrate fits
    hf:PATH_OR_ID[@BPS]
                       a transformers audio codec (EncodecModel, DacModel, MimiModel, XcodecModel)
                       from a save_pretrained folder or a hub id in the local hub cache; BPS one
                       of the bitrates it offers (default: the model's own default)
    spectral-gating[:stationary]
                       classical speech enhancement: noisereduce's spectral gating, non-stationary
                       (default) or stationary noise estimate; outputs 16-bit PCM

Speech enhancement adds two more kinds: :class:`InputSystem` (the noisy input unchanged, the row
enhancement gains are measured from) and :class:`EnhancerSystem` (a ``hasrd.enhance`` model,
``--enhancer DIR``).

A baseline whose tool or weights are missing raises :class:`SystemUnavailable`; the evaluator
prints one skip line for it and goes on.
"""
from __future__ import annotations

import abc
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hasrd.io.audio import load_audio, resample, save_audio


class SystemUnavailable(RuntimeError):
    """The system cannot run on this machine (tool or weights missing); the message says why."""


class System(abc.ABC):
    """Something that codes audio.

    Attributes:
        name: the row label in every table (unique within a run).
        family: the line a system belongs to in the plots (all bitrates of one codec).
        bitrate_nominal: the bit rate the system is configured for, in bit/s.
        kind: ``reference``, ``input`` (the noisy input of an enhancement set), ``hasrd``,
            ``hasrd-cont`` (a continuous hasrd codec), ``codec2``, ``opus``, ``encodec``, ``dac``,
            ``hf`` (a transformers audio codec) or ``enhancer`` (spectral gating, ``hasrd.enhance`` models).
        n_q: codebooks used (hasrd only, else None).
        clean_input: process the clean reference even when the utterance has a noisy input
            (the reference system only: the ceiling of a speech-enhancement set).
    """

    name: str
    family: str
    kind: str
    bitrate_nominal: float
    n_q: int | None = None
    clean_input: bool = False

    @abc.abstractmethod
    def process(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        """Code and decode 1-D float ``audio``; returns ``(decoded at sample_rate, payload bytes)``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.bitrate_nominal:g} bit/s>"


def _mono(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    return a.reshape(-1) if a.ndim != 1 else a


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size >= length:
        return audio[:length]
    return np.concatenate([audio, np.zeros(length - audio.size, np.float32)])


def _to_model(audio: np.ndarray, sample_rate: int, model_rate: int):
    """1-D ``audio`` at ``sample_rate`` -> ``(float32 tensor [1, 1, T] at model_rate, T)``."""
    import torch

    x = resample(_mono(audio), sample_rate, model_rate)
    return torch.from_numpy(np.ascontiguousarray(x)).float().view(1, 1, -1), x.size


def _from_model(y, model_rate: int, model_length: int, sample_rate: int, length: int) -> np.ndarray:
    """A model's output tensor (any shape holding one waveform at ``model_rate``) -> 1-D float32
    at ``sample_rate``, fitted to ``model_length`` before and to ``length`` after resampling."""
    y = _fit(y.detach().float().cpu().numpy(), model_length)
    return _fit(resample(y, model_rate, sample_rate), length)


# ---- the original ------------------------------------------------------------------------------


class ReferenceSystem(System):
    """The original audio, unchanged: 16-bit PCM at the evaluation rate (the ceiling). On a
    speech-enhancement set it is the clean reference, scored against itself."""

    kind = "reference"
    clean_input = True

    def __init__(self, sample_rate: int = 16000):
        self.name = self.family = "reference"
        self.bitrate_nominal = 16.0 * sample_rate

    def process(self, audio, sample_rate):
        audio = _mono(audio)
        return audio.copy(), 2 * audio.size


class InputSystem(ReferenceSystem):
    """The system input unchanged, 16-bit PCM: on a speech-enhancement set (utterances with a
    noisy ``input``), the noisy audio scored against the clean reference (the floor every
    enhancement gain is measured from). Added first whenever the set has noisy inputs."""

    kind = "input"
    clean_input = False

    def __init__(self, sample_rate: int = 16000):
        super().__init__(sample_rate)
        self.name = self.family = "input"


# ---- hasrd models --------------------------------------------------------------------------------


class HasrdModel:
    """One loaded :class:`hasrd.codecs.base.Codec`, encoding each input once for all its n_q.

    Codebooks form a prefix hierarchy (``n_q`` means the first ``n_q``), so the codes of all
    requested ``n_q`` come from one ``encode`` at the largest of them.
    """

    def __init__(self, codec, label: str):
        self.codec = codec.eval()
        self.label = label
        self._cache_key: str | None = None
        self._cache: tuple | None = None

    def codes(self, audio: np.ndarray, sample_rate: int, n_q: int | None = None):
        """``(LongTensor[n_q, frames], samples at the codec's rate)`` of ``audio`` (all codebooks
        when ``n_q`` is None)."""
        import torch

        n_q = self.codec.num_codebooks if n_q is None else n_q
        audio = _mono(audio)
        key = hashlib.blake2b(audio.tobytes(), digest_size=16).hexdigest() + f"/{sample_rate}"
        if self._cache_key != key:
            wav, length = _to_model(audio, sample_rate, self.codec.sample_rate)
            with torch.inference_mode():
                codes = self.codec.encode(wav, self.codec.num_codebooks)[0]
            self._cache_key, self._cache = key, (codes, length)
        codes, length = self._cache
        return codes[:n_q], length

    def decode(self, codes, length: int):
        import torch

        with torch.inference_mode():
            y = self.codec.decode(codes.unsqueeze(0))[0, 0]
        return _fit(y.float().numpy(), length)

    def payload_bytes(self, codes, length: int, sample_rate: int) -> int:
        """Bytes of the ``.hsrd`` token file these codes would be saved as (header and CRC included)."""
        from hasrd.io.tokenfile import token_meta, tokens_to_bytes

        return len(tokens_to_bytes(codes, token_meta(self.codec, length=length, orig_sample_rate=sample_rate)))


class HasrdSystem(System):
    """A hasrd codec decoding from its first ``n_q`` codebooks."""

    kind = "hasrd"

    def __init__(self, model: HasrdModel, n_q: int):
        self.model = model
        self.n_q = model.codec.check_n_q(n_q)
        self.family = f"hasrd:{model.label}"
        self.name = f"hasrd:{model.label}@nq{n_q}"
        self.bitrate_nominal = float(model.codec.bitrate(n_q))

    def process(self, audio, sample_rate):
        audio = _mono(audio)
        codes, codec_len = self.model.codes(audio, sample_rate, self.n_q)
        y = self.model.decode(codes, codec_len)
        out = _fit(resample(y, self.model.codec.sample_rate, sample_rate), audio.size)
        return out, self.model.payload_bytes(codes, audio.size, sample_rate)


class ContinuousSystem(System):
    """A continuous hasrd codec (``Codec.continuous``): its latent, stored as float16 as in a
    ``.hsrl`` file, decoded back. Nominal bitrate: ``latent_bitrate(16)``; payload: the bytes of
    the ``.hsrl`` file the latent would be saved as (safetensors header included)."""

    kind = "hasrd-cont"

    def __init__(self, model: HasrdModel):
        if not model.codec.continuous:
            raise ValueError(f"{model.label}: not a continuous codec")
        self.model = model
        self.family = self.name = f"hasrd-cont:{model.label}"
        self.bitrate_nominal = float(model.codec.latent_bitrate(16))

    def process(self, audio, sample_rate):
        import torch

        from hasrd.io.latentfile import latent_meta, latent_to_bytes

        audio = _mono(audio)
        codec = self.model.codec
        wav, length = _to_model(audio, sample_rate, codec.sample_rate)
        with torch.inference_mode():
            z = codec.encode_latent(wav)[0].to(torch.float16)  # what the file stores
            y = codec.decode_latent(z.float().unsqueeze(0))[0, 0]
        payload = len(latent_to_bytes(z.numpy(), latent_meta(codec, length=audio.size, orig_sample_rate=sample_rate)))
        return _from_model(y, codec.sample_rate, length, sample_rate, audio.size), payload


class UnquantisedSystem(System):
    """A bound, not a codec: a token codec's decoder fed its encoder's *unquantised* output, so no
    codebook costs anything. It scores what the encoder and decoder allow at any bitrate; the gap to
    a ``HasrdSystem`` row is what the codebooks cost. Its nominal bitrate is that of the latent
    stored as float16 (``latent_dim x frame_rate x 16``), which is what sending it would cost."""

    kind = "hasrd-bound"

    def __init__(self, model: HasrdModel):
        codec = model.codec
        if codec.continuous or not hasattr(codec, "encoder") or not hasattr(codec, "_run_decoder"):
            raise ValueError(f"{model.label}: the unquantised bound needs a token codec with one encoder and decoder")
        self.model = model
        self.family = f"hasrd-bound:{model.label}"
        self.name = f"hasrd:{model.label}@unquantised"
        import torch

        with torch.inference_mode():  # the latent's width, from one frame of silence
            dim = int(codec.encoder(torch.zeros(1, 1, codec.hop_length)).shape[1])
        self.bitrate_nominal = float(dim * codec.frame_rate * 16)

    def process(self, audio, sample_rate):
        import torch

        audio = _mono(audio)
        codec = self.model.codec
        wav, length = _to_model(audio, sample_rate, codec.sample_rate)
        with torch.inference_mode():
            z = codec.encoder(codec.pad_to_hop(wav))
            y = codec._run_decoder(z)[0, 0]
        return _from_model(y, codec.sample_rate, length, sample_rate, audio.size), 2 * z.numel()


def model_systems(model: HasrdModel, n_q_list: list[int], bound: bool = False) -> tuple[list[System], list[str]]:
    """The rows of one hasrd model and the skip lines: a token codec gives one
    :class:`HasrdSystem` per usable ``n_q`` (and, with ``bound``, the :class:`UnquantisedSystem`
    bound); a continuous codec one :class:`ContinuousSystem` (``n_q`` and the bound do not apply).
    The one place the evaluator branches on the codec's kind."""
    if model.codec.continuous:
        skipped = [f"skip hasrd:{model.label}@unquantised: a continuous codec has no codebooks to bound"] if bound else []
        return [ContinuousSystem(model)], skipped
    systems, skipped = [], []
    for n in n_q_list:
        if not 1 <= n <= model.codec.num_codebooks:
            skipped.append(f"skip hasrd:{model.label}@nq{n}: the model has {model.codec.num_codebooks} codebooks")
            continue
        systems.append(HasrdSystem(model, n))
    if bound:
        try:
            systems.append(UnquantisedSystem(model))
        except ValueError as exc:
            skipped.append(f"skip hasrd:{model.label}@unquantised: {exc}")
    return systems, skipped


def load_hasrd_model(spec: str) -> HasrdModel:
    """A built-in model's name (``default``, ``hcodec-25hz``), a save_pretrained folder or a hub id
    ``org/name`` (:func:`hasrd.codecs.load_codec`) -> :class:`HasrdModel` (label: the built-in
    name / the folder's or the repository's name)."""
    from hasrd.codecs import builtin_model_dir, load_codec

    codec = load_codec(spec)
    builtin = builtin_model_dir(spec)
    label = builtin.name if builtin is not None else Path(spec).resolve().name
    return HasrdModel(codec, label)


# ---- speech enhancement ------------------------------------------------------------------------------


class SpectralGatingSystem(System):
    """Classical speech enhancement: spectral gating by ``noisereduce.reduce_noise`` (its
    non-stationary noise estimate by default, the stationary one with ``stationary=True``), at the
    evaluation rate, one job. The output is 16-bit PCM like the reference (2 bytes a sample)."""

    kind = "enhancer"

    def __init__(self, stationary: bool = False, sample_rate: int = 16000):
        self.stationary = bool(stationary)
        self.name = "spectral-gating:stationary" if self.stationary else "spectral-gating"
        self.family = "spectral-gating"
        self.bitrate_nominal = 16.0 * sample_rate
        try:
            import noisereduce  # noqa: F401
        except ImportError:
            raise SystemUnavailable(f"{self.name}: package noisereduce not installed "
                                    "(pip install noisereduce)") from None

    def process(self, audio, sample_rate):
        import noisereduce

        audio = _mono(audio)
        y = noisereduce.reduce_noise(y=audio, sr=sample_rate, stationary=self.stationary, n_jobs=1)
        return _fit(y, audio.size), 2 * audio.size


ENHANCER_FORMS = ("continuous", "tokens")


class EnhancerSystem(System):
    """A speech enhancer of ``hasrd.enhance`` (``--enhancer DIR``): noisy waveform in, enhanced
    waveform out, resampled to and from the enhancer's rate like a hasrd codec.

    Nominal bitrate: the enhancer's ``bitrate`` (what its enhanced representation costs; 0 for a
    continuous one). Payload: that nominal rate over the utterance, rounded up to bytes (there is
    no container file to measure), so measured equals nominal.
    """

    kind = "enhancer"

    def __init__(self, enhancer, label: str | None = None):
        form = str(enhancer.form)
        if form not in ENHANCER_FORMS:
            raise ValueError(f"enhancer form {form!r} unknown; expected one of {', '.join(ENHANCER_FORMS)}")
        self.enhancer = enhancer
        self.name = label or str(enhancer.name)
        self.family = f"enhance-{form}"
        self.bitrate_nominal = float(enhancer.bitrate)

    def process(self, audio, sample_rate):
        import torch

        audio = _mono(audio)
        rate = int(self.enhancer.sample_rate)
        wav, length = _to_model(audio, sample_rate, rate)
        with torch.inference_mode():
            y = self.enhancer.enhance(wav)[0, 0]
        payload = math.ceil(self.bitrate_nominal * audio.size / sample_rate / 8.0)
        return _from_model(y, rate, length, sample_rate, audio.size), int(payload)


def load_enhancer_system(path: str) -> EnhancerSystem:
    """An ``--enhancer`` folder -> :class:`EnhancerSystem` (via ``hasrd.enhance.load_enhancer``).

    Raises:
        ImportError: ``hasrd.enhance`` cannot be imported.
        FileNotFoundError, ValueError: the folder is missing or not an enhancer export.
    """
    from hasrd.enhance import load_enhancer

    return EnhancerSystem(load_enhancer(path))


# ---- command-line codecs ----------------------------------------------------------------------------


def _need_tools(system: str, *tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemUnavailable(f"{system}: tool {', '.join(missing)} not found on PATH")


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if res.returncode != 0:
        tail = res.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {tail[0]}")


CODEC2_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C", "450")


class Codec2System(System):
    """Codec 2 through Debian's ``c2enc``/``c2dec`` (8 kHz 16-bit raw PCM in and out).

    The payload is the headerless ``.bit`` file that ``c2enc`` writes (each frame rounded up to
    whole bytes, so 700C's 28-bit frames take 4 bytes: 800 bit/s measured).
    """

    kind = "codec2"
    RATE = 8000

    def __init__(self, mode: str, enc_tool: str = "c2enc", dec_tool: str = "c2dec"):
        mode = mode.upper()
        if mode not in CODEC2_MODES:
            raise ValueError(f"codec2 mode {mode!r} unknown; use one of {', '.join(CODEC2_MODES)}")
        self.mode = mode
        self.name = f"codec2:{mode}"
        self.family = "codec2"
        self.bitrate_nominal = float(re.sub(r"\D", "", mode))
        self.enc_tool, self.dec_tool = enc_tool, dec_tool
        _need_tools(self.name, enc_tool, dec_tool)

    def process(self, audio, sample_rate):
        audio = _mono(audio)
        x = resample(audio, sample_rate, self.RATE)
        with tempfile.TemporaryDirectory(prefix="hasrd-c2-") as tmp:
            src, bits, dst = (os.path.join(tmp, n) for n in ("in.raw", "out.bit", "out.raw"))
            (np.clip(x, -1, 1) * 32767).astype("<i2").tofile(src)
            _run([self.enc_tool, self.mode, src, bits], "c2enc")
            _run([self.dec_tool, self.mode, bits, dst], "c2dec")
            payload = os.path.getsize(bits)
            y = np.fromfile(dst, dtype="<i2").astype(np.float32) / 32768.0
        return _fit(resample(y, self.RATE, sample_rate), audio.size), payload


class OpusSystem(System):
    """Opus through ``opusenc`` (default VBR, ``--bitrate``) and ``opusdec --rate``.

    The payload is the whole ``.opus`` file: Ogg pages and the OpusHead/OpusTags headers count,
    which adds a few hundred bytes per file (noticeable on short clips).
    """

    kind = "opus"

    def __init__(self, bps: float, enc_tool: str = "opusenc", dec_tool: str = "opusdec"):
        if not 6000 <= bps <= 256000:
            raise ValueError(f"opus bitrate {bps:g} bit/s is outside opusenc's 6000..256000")
        self.bitrate_nominal = float(bps)
        self.name = f"opus:{int(bps)}"
        self.family = "opus"
        self.enc_tool, self.dec_tool = enc_tool, dec_tool
        _need_tools(self.name, enc_tool, dec_tool)

    def process(self, audio, sample_rate):
        audio = _mono(audio)
        with tempfile.TemporaryDirectory(prefix="hasrd-opus-") as tmp:
            src, enc, dst = (os.path.join(tmp, n) for n in ("in.wav", "out.opus", "out.wav"))
            save_audio(src, audio[None], sample_rate)
            _run([self.enc_tool, "--quiet", "--bitrate", f"{self.bitrate_nominal / 1000:g}", src, enc], "opusenc")
            _run([self.dec_tool, "--quiet", "--rate", str(sample_rate), enc, dst], "opusdec")
            payload = os.path.getsize(enc)
            y, _ = load_audio(dst, sample_rate=sample_rate)
        return _fit(y[0], audio.size), payload


# ---- neural baselines (local weights only) -----------------------------------------------------------


ENCODEC_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
ENCODEC_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)


class EncodecSystem(System):
    """EnCodec 24 kHz (causal) at a target bandwidth; payload = bytes of ``encodec.compress``
    (its own container, no entropy-coding LM)."""

    kind = "encodec"

    def __init__(self, bps: float, weights: str | None = None):
        bw = bps / 1000.0
        if not any(abs(bw - b) < 1e-6 for b in ENCODEC_BANDWIDTHS):
            raise ValueError(f"encodec bitrate {bps:g} not one of {[int(b * 1000) for b in ENCODEC_BANDWIDTHS]}")
        self.name = f"encodec:{int(bps)}"
        self.family = "encodec"
        self.bitrate_nominal = float(bps)
        path = Path(weights) if weights else _torch_hub_file(ENCODEC_CHECKPOINT)
        if path is None or not path.is_file():
            raise SystemUnavailable(
                f"{self.name}: no local EnCodec weights ({'missing ' + str(path) if weights else 'none in the torch hub cache'}); "
                f"this machine cannot download them - pass encodec:{int(bps)}@/path/to/{ENCODEC_CHECKPOINT}"
            )
        import torch
        from encodec import EncodecModel

        model = EncodecModel.encodec_model_24khz(pretrained=False)
        model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        model.name = "encodec_24khz"  # pretrained=False names it 'unset'; these are the real weights
        model.set_target_bandwidth(bw)
        self.model = model.eval()

    def process(self, audio, sample_rate):
        import torch
        from encodec import compress

        audio = _mono(audio)
        sr = self.model.sample_rate
        x = torch.from_numpy(resample(audio, sample_rate, sr)).float().view(1, -1)
        with torch.inference_mode():
            payload = len(compress(self.model, x, use_lm=False))
            y = self.model.decode(self.model.encode(x.unsqueeze(0)))[0, 0].numpy()
        return _fit(resample(y, sr, sample_rate), audio.size), payload


def _torch_hub_file(name: str) -> Path | None:
    try:
        import torch

        p = Path(torch.hub.get_dir()) / "checkpoints" / name
        return p if p.is_file() else None
    except Exception:  # pragma: no cover
        return None


class DacSystem(System):
    """Descript Audio Codec from a local ``.pth``; payload = bit-packed codes
    (``frames * n_q * ceil(log2 K)`` bits, rounded up to bytes; DAC has no compact container)."""

    kind = "dac"

    def __init__(self, bps: float, weights: str | None = None):
        path = Path(weights) if weights else _dac_cache_file()
        label = f"dac:{int(bps)}"
        if path is None or not path.is_file():
            raise SystemUnavailable(
                f"{label}: no local DAC weights ({'missing ' + str(path) if weights else 'none in ~/.cache/descript/dac'}); "
                f"this machine cannot download them - pass dac:{int(bps)}@/path/to/weights.pth"
            )
        import warnings

        import dac

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = dac.DAC.load(str(path)).eval()
        fr = self.model.sample_rate / self.model.hop_length
        self.bits_per_code = (int(self.model.codebook_size) - 1).bit_length()
        per_cb = fr * math.log2(self.model.codebook_size)
        self.n_q = max(1, min(int(self.model.n_codebooks), int(bps // per_cb + 1e-9)))
        self.bitrate_nominal = self.n_q * per_cb
        self.name = f"dac:{int(bps)}"
        self.family = "dac"

    def process(self, audio, sample_rate):
        import torch

        audio = _mono(audio)
        m = self.model
        x = resample(audio, sample_rate, m.sample_rate)
        wav = torch.from_numpy(np.ascontiguousarray(x)).float().view(1, 1, -1)
        with torch.inference_mode():
            wav = m.preprocess(wav, m.sample_rate)
            _, codes, *_ = m.encode(wav, n_quantizers=self.n_q)
            codes = codes[:, : self.n_q]
            z, _, _ = m.quantizer.from_codes(codes)
            y = m.decode(z)[0, 0].numpy()[: x.size]
        payload = (codes.shape[-1] * self.n_q * self.bits_per_code + 7) // 8
        return _fit(resample(y, m.sample_rate, sample_rate), audio.size), int(payload)


def _dac_cache_file() -> Path | None:
    folder = Path.home() / ".cache" / "descript" / "dac"
    found = sorted(folder.glob("weights_*.pth")) if folder.is_dir() else []
    found.sort(key=lambda p: ("16khz" not in p.name, p.name))
    return found[0] if found else None


# ---- any transformers audio codec (hf:) --------------------------------------------------------------


#: the transformers codec classes ``hf:`` runs (tested on tiny random configs), and how a bitrate is
#: chosen for each: EnCodec and X-Codec by ``bandwidth`` (one of ``config.target_bandwidths``), DAC and
#: Mimi by their number of quantizers
HF_CODECS = ("EncodecModel", "DacModel", "MimiModel", "XcodecModel")
#: audio codecs of transformers that ``hf:`` does not run: their encoders also need the feature
#: extractor's mel input (``input_features``)
HF_CODECS_NOT_YET = ("Xcodec2Model", "NeuCodecModel")


def _hf_class_name(config) -> str:
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    name = MODEL_MAPPING_NAMES.get(getattr(config, "model_type", None), None)
    if isinstance(name, (list, tuple)):
        name = name[0]
    return str(name or (getattr(config, "architectures", None) or [type(config).__name__])[0])


class _QuietTransformers:
    """transformers' progress bars and load warnings off while a baseline loads (restored after)."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._log = hf_logging
        self._level = hf_logging.get_verbosity()
        self._bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        self._log.set_verbosity(self._level)
        if self._bars:
            self._log.enable_progress_bar()
        return False


def load_hf_codec(source: str):
    """``(model in eval mode, class name)`` of a transformers audio codec: a local folder written by
    ``save_pretrained`` or a hub id ``org/name`` (``AutoModel.from_pretrained``; with
    ``HF_HUB_OFFLINE=1``, or no network, from the local hub cache only; ``cache_dir`` and
    ``local_files_only`` follow the environment at call time, :mod:`hasrd.hub`).

    Raises:
        SystemUnavailable: no such folder, or a hub id that is not in the local cache.
        ValueError: the folder holds no transformers config, or not an audio codec ``hf:`` runs.
    """
    from hasrd.hub import hub_cache_dir, hub_offline, is_hub_id, not_found_message

    label = f"hf:{source}"
    local = Path(source).exists()
    if not local and not is_hub_id(source):
        raise SystemUnavailable(f"{label}: no such local folder (and not a hub id of the form org/name)")
    kwargs = {} if local else {"cache_dir": str(hub_cache_dir()), "local_files_only": hub_offline()}
    import warnings

    try:
        from transformers import AutoConfig, AutoModel
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise SystemUnavailable(f"{label}: transformers cannot be imported ({_first_line(exc)})") from None
    with _QuietTransformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = AutoConfig.from_pretrained(source, **kwargs)
        except OSError as exc:
            if local:
                raise ValueError(f"{label}: not a transformers model folder ({_first_line(exc)})") from None
            raise SystemUnavailable("hf:" + not_found_message(source, "model")) from None
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{label}: cannot read its config ({_first_line(exc)})") from None
        name = _hf_class_name(config)
        if name in HF_CODECS_NOT_YET:
            raise ValueError(f"{label}: {name} is not supported by hf: yet (its encoder needs the feature extractor's "
                             f"mel input); hf: takes {', '.join(HF_CODECS)}")
        if name not in HF_CODECS:
            raise ValueError(f"{label} is not an audio codec ({name}); hf: takes {', '.join(HF_CODECS)}")
        try:
            model = AutoModel.from_pretrained(source, **kwargs)
        except OSError as exc:
            if local:
                raise ValueError(f"{label}: cannot load the weights ({_first_line(exc)})") from None
            raise SystemUnavailable("hf:" + not_found_message(source, "model", _first_line(exc))) from None
    return model.eval(), name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


class HfCodecSystem(System):
    """A transformers audio codec (``hf:PATH_OR_ID[@BITRATE]``): EnCodec, DAC, Mimi or X-Codec.

    Bitrates offered: EnCodec's and X-Codec's ``config.target_bandwidths`` (the ``bandwidth`` of
    ``encode``, which picks a number of quantizers), DAC's and Mimi's numbers of quantizers (Mimi's
    from its semantic ones up). Nominal bitrate: frame rate x quantizers x log2 K, from the config
    (DAC's frame rate is sample rate / hop, as for ``dac:``). Without ``@BITRATE``: what the model's
    ``encode`` does by default (EnCodec: its lowest bandwidth; X-Codec: its highest; DAC and Mimi:
    all quantizers). Payload: the codes' bits, ``ceil(frames x n_q x ceil(log2 K) / 8)`` bytes, as
    for ``dac:`` (plus 4 bytes a chunk for the float32 scales of an EnCodec that normalises its input,
    the 48 kHz one). Audio is resampled to the model's rate and back; a model with two audio channels
    gets the mono signal on both and its output's mean is scored.
    """

    kind = "hf"

    def __init__(self, source: str, bps: float | None = None, *, model=None, class_name: str | None = None):
        if model is None:
            model, class_name = load_hf_codec(source)
        self.source, self.model, self.class_name = source, model, str(class_name or type(model).__name__)
        if self.class_name not in HF_CODECS:
            raise ValueError(f"hf:{source} is not an audio codec ({self.class_name}); hf: takes {', '.join(HF_CODECS)}")
        cfg = model.config
        rate = getattr(cfg, "sampling_rate", None) or getattr(cfg, "sample_rate", None)
        if not rate:
            raise ValueError(f"hf:{source}: its config names no sampling rate")
        self.rate = int(rate)
        self.channels = int(getattr(cfg, "audio_channels", 1) or 1)
        self.codebook_size = int(cfg.codebook_size)
        self.bits_per_code = (self.codebook_size - 1).bit_length()
        if self.class_name == "DacModel":
            self.frame_rate = self.rate / float(cfg.hop_length)
        else:
            self.frame_rate = float(cfg.frame_rate)
        per_q = self.frame_rate * math.log2(self.codebook_size)
        # (setting passed to encode, n_q) per offered bitrate
        if self.class_name in ("EncodecModel", "XcodecModel"):
            quant = model.quantizer
            settings = [(float(bw), int(quant.get_num_quantizers_for_bandwidth(bw))) for bw in cfg.target_bandwidths]
            default = cfg.target_bandwidths[0] if self.class_name == "EncodecModel" else cfg.target_bandwidths[-1]
        elif self.class_name == "DacModel":
            settings = [(n, n) for n in range(1, int(cfg.n_codebooks) + 1)]
            default = int(cfg.n_codebooks)
        else:  # MimiModel
            low = max(1, int(getattr(cfg, "num_semantic_quantizers", 1) or 1))
            settings = [(n, n) for n in range(low, int(cfg.num_quantizers) + 1)]
            default = int(cfg.num_quantizers)
        self.offered = {setting: n_q * per_q for setting, n_q in settings}
        n_q_of = dict(settings)
        self.label = Path(str(source).rstrip("/")).name or str(source)
        if bps is None:
            self.setting = float(default) if self.class_name in ("EncodecModel", "XcodecModel") else int(default)
        else:
            close = [(abs(nominal - bps), setting) for setting, nominal in self.offered.items()
                     if abs(nominal - bps) <= 0.005 * nominal + 0.5]
            if not close:
                offered = ", ".join(f"{_kbps_text(v)}kbps" for v in sorted(set(self.offered.values())))
                raise ValueError(f"hf:{source}@{_kbps_text(bps)}kbps: {bps:g} bit/s is not offered by this "
                                 f"{self.class_name}; it offers {offered}")
            self.setting = min(close)[1]
        self.n_q = n_q_of[self.setting]
        self.bitrate_nominal = float(self.offered[self.setting])
        self.family = f"hf:{self.label}"
        self.name = f"hf:{self.label}@{_kbps_text(self.bitrate_nominal)}kbps"

    def bitrates(self) -> list[float]:
        """The nominal bitrates this model offers, in bit/s (ascending)."""
        return sorted(set(self.offered.values()))

    def _code(self, wav):
        """``[1, C, T]`` at the model's rate -> ``(decoded tensor, payload bits)``."""
        import torch.nn.functional as F

        m, name = self.model, self.class_name
        if name == "EncodecModel":
            enc = m.encode(wav, bandwidth=self.setting, return_dict=True)
            codes, scales, pad = enc.audio_codes, enc.audio_scales, int(enc.last_frame_pad_length or 0)
            frames = codes.shape[0] * codes.shape[-1] - pad
            extra = 32 * sum(1 for s in scales if s is not None)
            y = m.decode(codes, scales, last_frame_pad_length=pad, return_dict=True).audio_values
            return y, frames * codes.shape[2] * self.bits_per_code + extra
        if name == "DacModel":
            hop = int(m.config.hop_length)
            pad = (-wav.shape[-1]) % hop
            codes = m.encode(F.pad(wav, (0, pad)) if pad else wav, n_quantizers=self.setting, return_dict=True).audio_codes
            codes = codes[:, : self.n_q]
            y = m.decode(audio_codes=codes, return_dict=True).audio_values
        elif name == "MimiModel":
            codes = m.encode(wav, num_quantizers=self.setting, return_dict=True).audio_codes
            y = m.decode(codes, return_dict=True).audio_values
        else:  # XcodecModel
            codes = m.encode(wav, bandwidth=self.setting, return_dict=True).audio_codes
            y = m.decode(codes, return_dict=True).audio_values
        return y, codes.shape[-1] * codes.shape[1] * self.bits_per_code

    def process(self, audio, sample_rate):
        import torch

        audio = _mono(audio)
        wav, length = _to_model(audio, sample_rate, self.rate)
        if self.channels > 1:
            wav = wav.expand(1, self.channels, wav.shape[-1]).contiguous()
        with torch.inference_mode():
            y, bits = self._code(wav)
            y = y.float().reshape(-1, y.shape[-1])
            y = y.mean(0) if y.shape[0] > 1 else y[0]
        return _from_model(y, self.rate, length, sample_rate, audio.size), int(math.ceil(bits / 8))


def _kbps_text(bps: float) -> str:
    return f"{bps / 1000:.4g}"


def _hf_spec(rest: str, spec: str) -> HfCodecSystem:
    """``PATH_OR_ID[@BITRATE]`` of ``hf:``: a path that exists as written keeps any ``@`` in it."""
    source, at, rate = rest.rpartition("@")
    if not at or Path(rest).exists():
        source, rate = rest, ""
    source = source.strip()
    if not source:
        raise ValueError(f"baseline {spec!r} needs a model: hf:FOLDER or hf:org/name, e.g. hf:facebook/encodec_24khz@1.5kbps")
    return HfCodecSystem(source, parse_bitrate(rate) if rate.strip() else None)


# ---- spec parsing -------------------------------------------------------------------------------------


def parse_bitrate(text: str) -> float:
    """``6000``, ``6k``, ``6kbps``, ``6.5 kbps``, ``1500bps`` -> bit/s."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(k|kbps|kbit/s|kb/s|bps|bit/s)?\s*", text.lower())
    if not m:
        raise ValueError(f"cannot read a bitrate from {text!r} (try 6000, 6k or 6kbps)")
    value = float(m.group(1))
    return value * 1000.0 if (m.group(2) or "").startswith("k") else value


def parse_baseline(spec: str) -> System:
    """One ``--baselines`` item -> a :class:`System` (see the module docstring for the forms).

    Raises:
        ValueError: the spec is malformed (an unknown kind, mode or bitrate).
        SystemUnavailable: the spec is fine but its tool or weights are not on this machine.
    """
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "spectral-gating":
        return SpectralGatingSystem(stationary=_gating_mode(rest, spec))
    if kind == "hf":
        return _hf_spec(rest, spec)
    arg, _, weights = rest.partition("@")
    if not arg:
        raise ValueError(f"baseline {spec!r} needs a setting, e.g. codec2:3200, opus:6000, encodec:1500")
    if kind == "codec2":
        return Codec2System(arg)
    if kind == "opus":
        return OpusSystem(parse_bitrate(arg))
    if kind == "encodec":
        return EncodecSystem(parse_bitrate(arg), weights or None)
    if kind == "dac":
        return DacSystem(parse_bitrate(arg), weights or None)
    raise ValueError(f"unknown baseline kind {kind!r} in {spec!r} (codec2, opus, encodec, dac, hf or spectral-gating)")


def _gating_mode(arg: str, spec: str) -> bool:
    """``spectral-gating[:MODE]``: True for ``stationary``, False for none/``nonstationary``."""
    mode = arg.strip().lower().replace("-", "").replace("_", "")
    if mode in ("", "nonstationary"):
        return False
    if mode == "stationary":
        return True
    raise ValueError(f"spectral-gating mode {arg!r} unknown in {spec!r}; "
                     "use spectral-gating or spectral-gating:stationary")
