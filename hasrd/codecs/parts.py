"""Pieces both codec families build from their config sections."""
from __future__ import annotations

import torch
from torch import nn

from ..encoders import ConvEncoder, SSLEncoder, StftEncoder

_VQ_KEYS = ("codebook_dim", "decay", "kmeans_init", "threshold_ema_dead_code", "commitment_weight", "rotation_trick")


def quantizer_kwargs(q: dict) -> dict:
    """The VectorQuantize options of a ``quantizer`` config section."""
    return {k: q[k] for k in _VQ_KEYS if k in q}


def build_encoder(spec: dict, latent_dim: int, causal: bool = False) -> nn.Module:
    """``{type: conv, d_model, strides}``, ``{type: stft, hop, stack, dim, hidden, layers, n_fft,
    compress}`` or ``{type: ssl, arch, pretrained, config, num_layers, trainable}``.

    ``causal`` (the ``model.causal`` switch) builds the left-padded conv encoder; the STFT and SSL
    encoders look ahead, so they refuse it.
    """
    spec = dict(spec)
    kind = spec.pop("type")
    if kind not in ENCODERS:
        names = list(ENCODERS)
        raise ValueError(f"unknown encoder type {kind!r}; use {', '.join(names[:-1])} or {names[-1]}")
    return ENCODERS[kind](spec, latent_dim, causal)


def _conv_encoder(spec: dict, latent_dim: int, causal: bool) -> nn.Module:
    return ConvEncoder(latent_dim, causal=causal, **spec)


def _ssl_encoder(spec: dict, latent_dim: int, causal: bool) -> nn.Module:
    if causal:
        raise ValueError("model.causal needs a conv encoder: an SSL encoder attends over the whole input")
    return SSLEncoder(latent_dim=latent_dim, **spec)


def _stft_encoder(spec: dict, latent_dim: int, causal: bool) -> nn.Module:
    if causal:
        raise ValueError("model.causal needs a conv encoder: the stft encoder looks ahead")
    unknown = set(spec) - {"hop", "stack", "dim", "hidden", "layers", "n_fft", "compress"}
    if unknown:
        raise ValueError(f"encoder type 'stft': unknown keys {sorted(unknown)}")
    compress = float(spec.pop("compress", 0.3))
    return StftEncoder(latent_dim, compress=compress, **{k: int(v) for k, v in spec.items()})


#: ``encoder.type`` -> builder ``(settings, latent_dim, causal) -> module``
ENCODERS = {"conv": _conv_encoder, "stft": _stft_encoder, "ssl": _ssl_encoder}


class SemanticHead(nn.Module):
    """Predicts the teacher's view from the semantic codebooks' quantized latent.

    ``dim`` > 0 adds a feature-regression projection (``features``, ``[B, F, dim]``); ``n_units``
    > 0 adds unit logits (``unit_logits``, ``[B, F, n_units]``). ``hidden`` > 0 puts a small
    convolutional layer in front (the dual-stream codec's semantic decoder); 0 keeps the heads
    linear, so codebook 1 itself must carry the teacher's information.
    """

    def __init__(self, latent_dim: int, dim: int = 0, n_units: int = 0, hidden: int = 0):
        super().__init__()
        self.trunk = (
            nn.Sequential(nn.Conv1d(latent_dim, hidden, 3, padding=1), nn.GELU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU())
            if hidden
            else nn.Identity()
        )
        width = hidden or latent_dim
        self.features = nn.Conv1d(width, dim, 1) if dim else None
        self.units = nn.Conv1d(width, n_units, 1) if n_units else None

    def forward(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(q)
        out = {}
        if self.features is not None:
            out["features"] = self.features(h).transpose(1, 2)
        if self.units is not None:
            out["unit_logits"] = self.units(h).transpose(1, 2)
        return out


class FrameDownsample(nn.Module):
    """Learned, explicit integer frame-rate reduction (strided conv), with the length asserted."""

    def __init__(self, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv1d(channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.factor:
            raise ValueError(f"{x.shape[-1]} frames do not divide by the down-sampling factor {self.factor}")
        y = self.conv(x)[..., : x.shape[-1] // self.factor]
        assert y.shape[-1] == x.shape[-1] // self.factor, (x.shape, y.shape)
        return y
