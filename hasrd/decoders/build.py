"""The generator a config's ``decoder`` section names: a table of ``type`` -> builder."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .generator import Generator
from .istft import IstftGenerator

ISTFT_KEYS = {"dim", "hidden", "layers", "n_fft", "upsample", "post_layers", "phase", "source", "aperiodic",
              "pitch_forcing"}


def _dac(cfg: dict, latent_dim: int, hop: int | None, causal: bool, sample_rate: int) -> nn.Module:
    """``type: dac``: DAC's upsampling generator (``channels``, ``rates``); causal if asked."""
    return Generator(latent_dim, int(cfg["channels"]), cfg["rates"], causal=causal)


def _istft(cfg: dict, latent_dim: int, hop: int | None, causal: bool, sample_rate: int) -> nn.Module:
    """``type: istft``: the frame-rate ConvNeXt stack with an inverse-STFT head (hop from the encoder)."""
    if causal:
        raise ValueError("decoder type 'istft' is not causal: use type 'dac' for a causal codec")
    if hop is None:
        raise ValueError("decoder type 'istft' needs the encoder's hop")
    unknown = set(cfg) - ISTFT_KEYS
    if unknown:
        raise ValueError(f"decoder type 'istft': unknown keys {sorted(unknown)}")
    phase = str(cfg.pop("phase", "absolute"))
    source = str(cfg.pop("source", "none"))
    aperiodic = str(cfg.pop("aperiodic", "noise"))
    forcing = cfg.pop("pitch_forcing", False)
    if not isinstance(forcing, bool):
        raise ValueError(f"decoder type 'istft': pitch_forcing must be true or false, not {forcing!r}")
    return IstftGenerator(latent_dim, hop, phase=phase, source=source, aperiodic=aperiodic,
                          pitch_forcing=forcing, sample_rate=sample_rate, **{k: int(v) for k, v in cfg.items()})


#: ``decoder.type`` -> builder ``(settings, latent_dim, hop, causal, sample_rate) -> module``
GENERATORS: dict[str, Callable[..., nn.Module]] = {"dac": _dac, "istft": _istft}


def build_generator(cfg: dict, latent_dim: int, hop: int | None = None, causal: bool = False,
                    sample_rate: int = 16000) -> nn.Module:
    """The generator a config's ``decoder`` section names (``type``: a key of :data:`GENERATORS`,
    default ``dac``; the other keys are that builder's settings)."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "dac")
    if kind not in GENERATORS:
        raise ValueError(f"decoder type must be {' or '.join(repr(k) for k in GENERATORS)}, not {kind!r}")
    return GENERATORS[kind](cfg, latent_dim, hop, causal, sample_rate)
