"""The vocoder generator: DAC's HiFi-GAN-style up-sampling decoder with Snake activations.

Why this one: it is the generator of a codec that is known to work at low bitrates, it is shipped
and maintained in ``descript-audio-codec`` (so we reuse it instead of rewriting it), it is a plain
stack of convolutions that exports cleanly, and it scales from ~1 M parameters (CPU) to ~50 M (GPU)
with one ``channels`` knob, and it has a causal twin that streams. On a CPU its narrow high-rate
stages are slow: :mod:`.istft` (``decoder.type: istft``) is the frame-rate alternative, about 7x
faster at the default model's size, and what the default model ships with.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn import CausalDecoder, DACDecoder


class Generator(nn.Module):
    """``[B, latent_dim, F]`` -> ``[B, 1, F * prod(rates)]`` in [-1, 1].

    Args:
        latent_dim: input channels.
        channels: width of the first layer (halved at every up-sampling stage).
        rates: up-sampling factors, even (DAC's transposed convs are exact only for even ones).
        causal: left-padded convs and right-trimmed transposed convs
            (:class:`hasrd.nn.causal.CausalDecoder`): output block ``j`` depends on frames ``<= j``
            only, and the generator can stream.
    """

    #: a decoder that predicts and renders pitch (an iSTFT decoder with a source) says so here
    renders_pitch = False
    #: weight-name prefixes a warm start may find missing (new heads that start from scratch)
    warm_start_new: tuple[str, ...] = ()

    def __init__(self, latent_dim: int, channels: int = 256, rates: list[int] = (8, 5, 4, 2), causal: bool = False):
        super().__init__()
        if any(r % 2 for r in rates if r > 1):
            raise ValueError(f"generator rates must be even, got {list(rates)}")
        if channels // 2 ** len(rates) < 1:
            raise ValueError(f"channels={channels} too small for {len(rates)} up-sampling stages")
        self.hop = math.prod(rates)
        self.causal = bool(causal)
        self.net = (CausalDecoder if self.causal else DACDecoder)(latent_dim, channels, list(rates))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.net(z)
        assert y.shape[-1] == z.shape[-1] * self.hop, (y.shape, z.shape, self.hop)
        return y
