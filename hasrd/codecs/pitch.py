"""A token codec with the voice's pitch in its codes, rendered by signal processing.

The codes of a base token codec (its semantic codebook first, then its acoustic residuals) with a
pitch codebook inserted second (:class:`hasrd.pitch.quant.PitchCodebook`: log F0 and voicing per
frame from the encoder-side tracker :func:`hasrd.pitch.track.track`): semantic, pitch, acoustic.
``n_q`` counts the pitch codebook like any other, so ``n_q = 1`` is the semantic codebook alone
(decoded by the base codec's own decoder: no pitch was sent), and ``n_q = k >= 2`` is the
semantic codebook, the pitch and ``k - 2`` acoustic codebooks.

The decoder: a small convolutional network reads the base codec's quantized latent and predicts
the spectral envelope (log power per band); the fixed harmonic-plus-noise synthesiser
(:class:`hasrd.pitch.synth.HarmonicNoiseSynth`) renders a pulse train at the transmitted F0 and
noise through it, the envelope shared between the two by the transmitted voicing (harmonic below
``synth.mvf`` Hz in voiced frames, ``synth.share`` of the power above). The network learns the
envelope only, by regression on the envelope the synthesiser's own analysis reads from the
training audio, with the base codec frozen; the pitch costs it nothing to learn.

The latent (:meth:`encode_to_latent`) is the base codec's latent with two channels added: log2 of
F0 and the voicing (-1 where no pitch was sent), so ``decode_latent(encode_to_latent(x,
quantize=True, n_q=n)) == decode(encode(x, n))`` as for every token codec.

Config (``model``)::

    name: pitch
    base: default            # the base token codec: a built-in name or folder (its config and,
                             # when training starts, its weights), or a whole model config
    pitch: {f0_bits: 7, voicing_bits: 3, fmin: 60.0, fmax: 450.0}
    envelope: {source: residual, hidden: 256, layers: 4, kernel: 5, floor_db: 50.0}
    synth: {n_bands: 32, n_fft: 512, mvf: 4000.0, share: 0.5}

``envelope.source``: ``network`` (the network predicts the envelope from the latent), ``base`` (the
envelope of the base codec's own decoded audio, nothing trained) or ``residual`` (the network reads
that envelope too and predicts a correction to it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..io.saved import WEIGHTS_NAME
from ..pitch.envelope import EnvelopeNet, envelope_loss, pitch_features
from ..pitch.quant import PitchCodebook
from ..pitch.synth import HarmonicNoiseSynth, band_edges
from .base import CodecOutput, TokenCodec
from .envelope import EnvelopeCodec
from .persist import CONFIG_NAME
from .registry import codec_class, register_codec

NO_PITCH = -1.0  #: the voicing channel of a latent decoded without a pitch stream


def _resolve_base(base: Any) -> tuple[dict, str | None]:
    """``model.base`` -> (the base model config, the folder its weights come from, if any)."""
    if isinstance(base, dict):
        return dict(base), None
    from ..hub import resolve_model_dir
    from .builtin import builtin_model_dir

    folder = builtin_model_dir(str(base)) or resolve_model_dir(base)
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"model.base {base!r}: no {CONFIG_NAME} in {folder}")
    return json.loads(path.read_text())["model"], str(folder)


@register_codec("pitch")
class PitchCodec(TokenCodec):
    codec_name: ClassVar[str] = "pitch"

    def __init__(self, config: dict[str, Any]):
        base_cfg, self._base_source = _resolve_base(config.get("base", "default"))
        config = {**config, "base": base_cfg}
        super().__init__(config)
        self.base = codec_class(base_cfg["name"]).from_config(base_cfg)
        if not isinstance(self.base, TokenCodec) or self.base.num_codebooks < 1:
            raise ValueError("model.base must be a token codec")
        self.pitch_book = PitchCodebook(**(config.get("pitch") or {}))
        s = {"n_bands": 32, "n_fft": 1024, "mvf": 4000.0, "share": 0.5, **(config.get("synth") or {})}
        self.mvf, self.share = float(s["mvf"]), float(s["share"])
        self.synth = HarmonicNoiseSynth(self.base.sample_rate, self.base.hop_length, int(s["n_bands"]), int(s["n_fft"]))
        centres = band_edges(self.base.sample_rate, int(s["n_bands"]))
        centres = torch.tensor(0.5 * (centres[:-1] + centres[1:]), dtype=torch.float32)
        self.register_buffer("harmonic_share", torch.where(centres < self.mvf, 1.0, self.share), persistent=False)
        e = {"source": "network", "hidden": 256, "layers": 4, "kernel": 5, **(config.get("envelope") or {})}
        if e["source"] not in ("network", "base", "residual"):
            raise ValueError(f"model.envelope.source must be network, base or residual, not {e['source']!r}")
        self.envelope_source = e["source"]
        # residual: the network reads the base decoder's envelope too and predicts a correction to it
        extra = int(s["n_bands"]) if e["source"] == "residual" else 0
        self.envelope = EnvelopeNet(self.base.latent_dim + extra, int(s["n_bands"]), int(e["hidden"]), int(e["layers"]),
                                    int(e["kernel"])) if e["source"] != "base" else None
        #: the regression's floor: each frame's bands count down to this many dB below its loudest band
        self.floor_db = float(e.get("floor_db", 120.0))
        #: ``model.train_base``: the base trains with the pitch codec (an envelope codec given as a
        #: config, trained from scratch); otherwise it is frozen and only the envelope network learns
        self.train_base = bool(config.get("train_base", False))
        #: ``model.render_in_training`` (with ``train_base``): each training step also renders the
        #: decoded envelope at the tracked pitch through the synthesiser, so the trainer's waveform
        #: losses (``loss_weights.mel`` ...) train the envelope codec through it
        self.render_in_training = bool(config.get("render_in_training", False))
        if self.train_base and not isinstance(self.base, EnvelopeCodec):
            raise ValueError("model.train_base needs model.base to be an envelope codec (name: envelope)")
        if self.train_base and self.envelope is not None:
            raise ValueError("model.train_base trains the envelope codec's own decoder: set envelope.source: base")
        if not self.train_base:
            self.base.requires_grad_(False)
        if int(config.get("sample_rate", self.base.sample_rate)) != self.base.sample_rate:
            raise ValueError(f"model.sample_rate {config['sample_rate']} is not the base codec's {self.base.sample_rate}")

    # ---- facts -------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.base.sample_rate

    @property
    def hop_length(self) -> int:
        return self.base.hop_length

    @property
    def latent_dim(self) -> int:
        return self.base.latent_dim + 2

    @property
    def codebook_sizes(self) -> list[int]:
        sizes = list(self.base.codebook_sizes)
        return sizes[:1] + [self.pitch_book.size] + sizes[1:]

    @property
    def num_semantic_codebooks(self) -> int:
        return self.base.num_semantic_codebooks

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.train_base:
            self.base.eval()  # frozen: its quantizer must not update codebooks, nor drop codebooks
        return self

    # ---- pitch -------------------------------------------------------------------------------
    def _pitch(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F0 (Hz) and voicing (0..1) of ``[B, 1, T]`` (whole frames) at the codec's frames."""
        from ..pitch.track import track

        f0, voicing = track(wav[:, 0], self.sample_rate, self.hop_length)
        return f0.float(), voicing.float()

    # ---- latent and codes --------------------------------------------------------------------
    def _encoder_latent(self, wav: torch.Tensor) -> torch.Tensor:
        f0, voicing = self._pitch(wav)
        # an envelope codec reads the envelope pitch-adaptively at the F0 just tracked
        z = self.base.latent_at(wav, f0) if isinstance(self.base, EnvelopeCodec) else self.base._encoder_latent(wav)
        F = z.shape[-1]
        return torch.cat([z, torch.log2(f0[:, None, :F]), voicing[:, None, :F]], dim=1)

    def _split(self, latent: torch.Tensor):
        D = self.base.latent_dim
        return latent[:, :D], torch.exp2(latent[:, D]), latent[:, D + 1]

    def _latent_to_codes(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        z, f0, voicing = self._split(latent)
        base = self.base.latent_to_codes(z, max(1, n_q - 1))
        if n_q == 1:
            return base
        pitch = self.pitch_book.encode(f0, voicing)[:, None]
        return torch.cat([base[:, :1], pitch, base[:, 1:]], dim=1)

    def _codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        n_q = codes.shape[1]
        base_codes = codes[:, :1] if n_q == 1 else torch.cat([codes[:, :1], codes[:, 2:]], dim=1)
        z = self.base.codes_to_latent(base_codes)
        if n_q == 1:
            extra = torch.stack([torch.zeros_like(z[:, 0]), torch.full_like(z[:, 0], NO_PITCH)], dim=1)
        else:
            f0, voicing = self.pitch_book.decode(codes[:, 1])
            extra = torch.stack([torch.log2(f0), voicing], dim=1).to(z.dtype)
        return torch.cat([z, extra], dim=1)

    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        n_q = self.check_n_q(n_q)
        return self.latent_to_codes(self.encode_to_latent(wav), n_q)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_latent(self.codes_to_latent(codes))

    def shift_pitch(self, codes: torch.Tensor, semitones: float) -> torch.Tensor:
        """``codes`` with the voice moved by ``semitones`` (the pitch codebook's F0 scaled by
        ``2 ** (semitones / 12)``, kept within its range; voicing, envelope and timing unchanged):
        the pitch is its own stream, so a voice is edited without encoding it again."""
        if codes.shape[1] < 2:
            raise ValueError("these codes hold no pitch stream (n_q = 1): nothing to shift")
        f0, voicing = self.pitch_book.decode(codes[:, 1])
        out = codes.clone()
        out[:, 1] = self.pitch_book.encode(f0 * 2.0 ** (float(semitones) / 12.0), voicing)
        return out

    # ---- the decoder -------------------------------------------------------------------------
    def _base_log_envelope(self, z: torch.Tensor, f0: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """log band power ``[B, F, N]`` of the base codec's own decoding of ``z`` (pitch-adaptive
        analysis), or an envelope codec's decoded envelope itself (reading the sent pitch where
        its decoder takes it: ``pitch_input``)."""
        if isinstance(self.base, EnvelopeCodec):
            return self.base.log_envelope(z, pitch_features(f0, voicing) if self.base.pitch_input else None)
        audio = self.base._run_latent_decoder(z)[:, 0]
        return torch.log(self.synth.analyse(audio, f0)[:, : f0.shape[1]].clamp(min=1e-10))

    def log_envelope(self, z: torch.Tensor, f0: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """The predicted log band power ``[B, F, N]`` of a (quantized) base latent at the sent F0
        and voicing."""
        if self.envelope is None:  # source: base: the envelope of the base codec's own decoded audio
            return self._base_log_envelope(z, f0, voicing)
        if self.envelope_source == "residual":
            with torch.no_grad():
                base = self._base_log_envelope(z, f0, voicing)
            return base + self.envelope(torch.cat([z, base.transpose(1, 2).to(z.dtype)], dim=1))
        return self.envelope(z)

    def render(self, z: torch.Tensor, f0: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """The base codec's (quantized) latent, F0 (Hz) and voicing per frame -> ``[B, 1, F * hop]``."""
        env = torch.exp(self.log_envelope(z, f0, voicing).float())  # [B, F, N] band power
        harmonic = env * voicing.clamp(0, 1)[..., None] * self.harmonic_share
        return self.synth(f0, harmonic, env - harmonic)

    def _run_latent_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        z, f0, voicing = self._split(latent)
        if bool((voicing == NO_PITCH).all()):
            return self.base._run_latent_decoder(z)  # no pitch stream: the base codec's own decoder
        return self.render(z, f0, voicing)

    # ---- training ----------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, n_q: torch.Tensor | int | None = None) -> CodecOutput:
        """Envelope regression on frozen codes: each item keeps a random prefix of the base
        codebooks (all of them for an ``n_q`` given), the target is the synthesiser's analysis of
        the input (pitch-adaptive); ``losses["env"]`` is the mean absolute error of the log band
        power (both floored ``envelope.floor_db`` below each frame's loudest band), over frames
        louder than 60 dB below the item's loudest."""
        if self.train_base:
            return self._train_base(wav, n_q)
        if self.envelope is None:
            raise ValueError("model.envelope.source: base has nothing to train")
        wav = self.pad_to_hop(wav)
        B = wav.shape[0]
        K = self.base.num_codebooks
        with torch.no_grad():
            z = self.base._encoder_latent(wav)
            codes = self.base.latent_to_codes(z, K)
            if n_q is None:
                keep = torch.randint(1, K + 1, (B,), device=wav.device) if self.training else torch.full((B,), K)
            else:
                keep = torch.full((B,), max(1, int(n_q) - 1) if isinstance(n_q, int) else K)
            zq = torch.stack([self.base.codes_to_latent(codes[i:i + 1, : int(keep[i])])[0] for i in range(B)])
            f0, voicing = self._pitch(wav)
            target = torch.log(self.synth.analyse(wav[:, 0], f0).clamp(min=1e-10))
        pred = self.log_envelope(zq, f0, voicing)
        env_loss = envelope_loss(pred, target, self.floor_db)
        return CodecOutput(audio=None, codes=codes, n_q=keep + 1, losses={"env": env_loss})

    def _train_base(self, wav: torch.Tensor, n_q) -> CodecOutput:
        """The envelope codec's own training pass (envelope regression through its quantizer,
        semantic distillation) at the tracked F0; the pitch codes inserted second; with
        ``render_in_training``, the audio rendered from the decoded envelope too."""
        T = wav.shape[-1]
        wav = self.pad_to_hop(wav)
        with torch.no_grad():
            f0, voicing = self._pitch(wav)
        if isinstance(n_q, int):
            n_q = max(1, n_q - 1)
        pitch = self.pitch_book.encode(f0, voicing)
        sent_f0, sent_voicing = self.pitch_book.decode(pitch)  # what the decoder will read
        sent = pitch_features(sent_f0, sent_voicing) if self.base.pitch_input else None
        out = self.base(wav, n_q=n_q, f0=f0, pitch=sent)
        if self.render_in_training:
            if self.base.pitch_input:  # the decoder reads the sent pitch: render from it, as decoding does
                f0, voicing = sent_f0, sent_voicing
            out.audio = self.render(out.latent, f0, voicing)[..., :T]
        out.codes = torch.cat([out.codes[:, :1], pitch[:, None], out.codes[:, 1:]], dim=1)
        out.n_q = out.n_q + 1
        return out

    def prepare_training(self, warm_start_keys: set[str] | None) -> str | None:
        """A fresh run takes the base codec's weights from ``model.base``'s folder."""
        if warm_start_keys is not None or self._base_source is None:
            return None
        from safetensors.torch import load_file

        state = load_file(str(Path(self._base_source) / WEIGHTS_NAME))
        missing, unexpected = self.base.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        missing = [k for k in missing if not self.base.is_optional_weight(k)]
        if missing or unexpected:
            raise ValueError(f"model.base {self._base_source}: weights do not match (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        return f"pitch codec: the base codec's weights from {self._base_source} (frozen)"
