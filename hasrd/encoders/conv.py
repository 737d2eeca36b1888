"""Convolutional waveform encoder (DAC's strided Snake encoder from descript-audio-codec)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn import CausalEncoder, DACEncoder


class ConvEncoder(nn.Module):
    """``[B, 1, T]`` -> ``[B, latent_dim, T / prod(strides)]`` for ``T`` a multiple of the hop.

    Args:
        d_model: channels of the first layer (doubled at every stride).
        strides: down-sampling factors; their product is the hop length. Use even strides: DAC's
            blocks keep lengths exact only for even ones (checked).
        latent_dim: output channels.
        causal: pad on the left only (:class:`hasrd.nn.causal.CausalEncoder`): frame ``j`` then
            depends on samples ``< (j + 1) * hop`` only, and the encoder can stream.
    """

    def __init__(self, latent_dim: int, d_model: int = 32, strides: list[int] = (2, 4, 5, 8), causal: bool = False):
        super().__init__()
        if any(s % 2 for s in strides if s > 1):
            raise ValueError(f"conv encoder strides must be even, got {list(strides)}")
        self.hop = math.prod(strides)
        self.causal = bool(causal)
        net_cls = CausalEncoder if self.causal else DACEncoder
        self.net = net_cls(d_model=d_model, strides=list(strides), d_latent=latent_dim)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        z = self.net(wav)
        assert z.shape[-1] == wav.shape[-1] // self.hop, (z.shape, wav.shape, self.hop)
        return z
