"""Causal versions of DAC's encoder and generator, and the per-layer state that lets them stream.

The layer structure is DAC's (weight-normed convs, Snake activations, residual units with dilations
1, 3, 9, strided convs of kernel ``2 * stride``, transposed convs of kernel ``2 * stride``), and the
pieces that fit are DAC's own (``Snake1d``, ``WNConv1d``, ``WNConvTranspose1d``). Only the padding
differs: every convolution is padded on the left only, and every transposed convolution is trimmed
on the right only, so output sample ``t`` depends on input up to ``t`` (to the end of ``t``'s
frame, for the strided layers).

Streaming
---------
Every module here has ``stream_step(x, state) -> (y, state)``. ``state`` is ``None`` for a fresh
stream; ``x`` (``[B, C, n]``, any ``n``) is the next piece of the input and ``y`` the next piece of
the output, or ``None`` when the piece was too short to produce any output yet. The state holds
exactly what the offline ``forward`` would have seen to the left of ``x``:

* a convolution keeps the last ``(kernel - 1) * dilation + 1 - stride`` inputs (starting as the
  zeros the offline left padding adds) plus any inputs not yet consumed by a whole stride;
* a transposed convolution keeps its last ``ceil(kernel / stride) - 1`` input frames (starting as
  zeros, which contribute nothing, as in the offline pass).

So the concatenated outputs of ``stream_step`` over any split of the input equal ``forward`` of
the whole input (up to float rounding), and the work per step is proportional to the step's length
plus a fixed context. :func:`stream_step` also steps ``nn.Sequential`` containers and pointwise
layers (Snake, tanh), which need no state.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from dac.nn.layers import Snake1d, WNConv1d, WNConvTranspose1d
from torch import nn

from .inference import InferenceSnake

_POINTWISE = (Snake1d, InferenceSnake, nn.Tanh, nn.Identity)


def stream_step(module: nn.Module, x: torch.Tensor | None, state: Any = None):
    """One streaming step of ``module``: ``(next output piece or None, new state)``."""
    if x is None:
        return None, state
    if hasattr(module, "stream_step"):
        return module.stream_step(x, state)
    if isinstance(module, nn.Sequential):
        states = list(state) if state is not None else [None] * len(module)
        for i, child in enumerate(module):
            x, states[i] = stream_step(child, x, states[i])
        return x, states
    if isinstance(module, _POINTWISE):
        return module(x), None
    raise TypeError(f"{type(module).__name__} has no streaming form")


class CausalConv1d(nn.Module):
    """A weight-normed ``Conv1d`` padded on the left only.

    For ``T`` inputs (a multiple of ``stride``) it gives ``T / stride`` outputs, and output ``j``
    depends on inputs ``< (j + 1) * stride``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = WNConv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.stride = stride
        self.span = (kernel_size - 1) * dilation + 1  # inputs one output sees
        self.left = self.span - stride
        if self.left < 0:
            raise ValueError(f"kernel span {self.span} shorter than the stride {stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left, 0)))

    def stream_step(self, x: torch.Tensor, state: torch.Tensor | None):
        if state is None:
            state = x.new_zeros(x.shape[0], x.shape[1], self.left)
        buf = torch.cat([state, x], dim=-1)
        n = (buf.shape[-1] - self.span) // self.stride + 1 if buf.shape[-1] >= self.span else 0
        if n <= 0:
            return None, buf
        y = self.conv(buf[..., : (n - 1) * self.stride + self.span])
        return y, buf[..., n * self.stride:]


class CausalConvTranspose1d(nn.Module):
    """A weight-normed ``ConvTranspose1d`` (kernel ``2 * stride``) trimmed on the right only.

    ``F`` input frames give ``F * stride`` outputs; output block ``j`` depends on frames ``<= j``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        kernel = 2 * stride
        self.conv = WNConvTranspose1d(in_channels, out_channels, kernel, stride=stride)
        self.stride = stride
        self.trim = kernel - stride
        self.context = math.ceil(kernel / stride) - 1  # earlier frames that overlap a frame's output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., : y.shape[-1] - self.trim]

    def stream_step(self, x: torch.Tensor, state: torch.Tensor | None):
        if state is None:
            state = x.new_zeros(x.shape[0], x.shape[1], self.context)
        buf = torch.cat([state, x], dim=-1)
        y = self.conv(buf)
        start = self.context * self.stride
        return y[..., start: start + x.shape[-1] * self.stride], buf[..., buf.shape[-1] - self.context:]


class CausalResidualUnit(nn.Module):
    """DAC's residual unit (Snake, dilated conv 7, Snake, conv 1, skip) with causal padding."""

    def __init__(self, dim: int, dilation: int = 1):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            CausalConv1d(dim, dim, 7, dilation=dilation),
            Snake1d(dim),
            CausalConv1d(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)

    def stream_step(self, x: torch.Tensor, state):
        y, state = stream_step(self.block, x, state)
        return x + y, state  # stride-1 causal convs return exactly as many samples as they got


def _encoder_block(dim: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        CausalResidualUnit(dim // 2, 1),
        CausalResidualUnit(dim // 2, 3),
        CausalResidualUnit(dim // 2, 9),
        Snake1d(dim // 2),
        CausalConv1d(dim // 2, dim, 2 * stride, stride=stride),
    )


def _decoder_block(in_dim: int, out_dim: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        Snake1d(in_dim),
        CausalConvTranspose1d(in_dim, out_dim, stride),
        CausalResidualUnit(out_dim, 1),
        CausalResidualUnit(out_dim, 3),
        CausalResidualUnit(out_dim, 9),
    )


class CausalEncoder(nn.Module):
    """DAC's strided Snake encoder, causal: ``[B, 1, T]`` -> ``[B, d_latent, T / prod(strides)]``."""

    def __init__(self, d_model: int = 64, strides: list[int] = (2, 4, 8, 8), d_latent: int = 64):
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(1, d_model, 7)]
        for s in strides:
            d_model *= 2
            layers.append(_encoder_block(d_model, s))
        layers += [Snake1d(d_model), CausalConv1d(d_model, d_latent, 3)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)

    def stream_step(self, x: torch.Tensor, state):
        return stream_step(self.block, x, state)


class CausalDecoder(nn.Module):
    """DAC's Snake up-sampling generator, causal: ``[B, C, F]`` -> ``[B, 1, F * prod(rates)]``."""

    def __init__(self, input_channel: int, channels: int, rates: list[int], d_out: int = 1):
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(input_channel, channels, 7)]
        out_dim = channels
        for i, s in enumerate(rates):
            in_dim, out_dim = channels // 2**i, channels // 2 ** (i + 1)
            layers.append(_decoder_block(in_dim, out_dim, s))
        layers += [Snake1d(out_dim), CausalConv1d(out_dim, d_out, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def stream_step(self, x: torch.Tensor, state):
        return stream_step(self.model, x, state)
