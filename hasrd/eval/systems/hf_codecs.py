"""Any transformers audio codec (``hf:PATH_OR_ID[@BITRATE]``): :func:`load_hf_codec` and
:class:`HfCodecSystem` (EnCodec, DAC, Mimi and X-Codec)."""
from __future__ import annotations

import math
from pathlib import Path

from .base import System, SystemUnavailable, from_model, mono, to_model

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

        audio = mono(audio)
        wav, length = to_model(audio, sample_rate, self.rate)
        if self.channels > 1:
            wav = wav.expand(1, self.channels, wav.shape[-1]).contiguous()
        with torch.inference_mode():
            y, bits = self._code(wav)
            y = y.float().reshape(-1, y.shape[-1])
            y = y.mean(0) if y.shape[0] > 1 else y[0]
        return from_model(y, self.rate, length, sample_rate, audio.size), int(math.ceil(bits / 8))


def _kbps_text(bps: float) -> str:
    return f"{bps / 1000:.4g}"
