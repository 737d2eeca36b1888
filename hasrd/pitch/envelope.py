"""The spectral envelope as the network sees it: log band power per frame, and the small
convolutional network that maps a latent to it (or it to a latent).

The envelope is the synthesiser's own analysis (:meth:`hasrd.pitch.synth.HarmonicNoiseSynth.analyse`,
power per band on its band grid, pitch-adaptive when the F0 is known), in natural log, floored
``floor_db`` below each frame's loudest band: the depth of a spectral valley beyond that is
inaudible under the peaks and not worth bits or a loss.
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: log band power is fed to networks as ``(log_power - LOG_CENTRE) / LOG_SCALE`` (speech at
#: everyday levels then lies within about -2..2; digital silence, 1e-10, at -2.6)
LOG_CENTRE, LOG_SCALE = -10.0, 5.0


def floor_log(log_power: torch.Tensor, floor_db: float) -> torch.Tensor:
    """``[..., N]`` log band power, each frame floored ``floor_db`` dB below its loudest band."""
    floor = log_power.amax(dim=-1, keepdim=True) - floor_db / 10 * math.log(10)
    return torch.maximum(log_power, floor)


def envelope_loss(pred: torch.Tensor, target: torch.Tensor, floor_db: float,
                  band_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error of log band power ``[B, F, N]``, both floored ``floor_db`` below the
    target frame's loudest band, over the frames no more than 60 dB below the item's loudest;
    each band's error times ``band_weight [N]`` where given (a weighted mean)."""
    floor = target.amax(dim=-1, keepdim=True) - floor_db / 10 * math.log(10)
    target, pred = torch.maximum(target, floor), torch.maximum(pred, floor)
    loud = target.amax(dim=-1)  # [B, F]
    mask = (loud >= loud.amax(dim=1, keepdim=True) - math.log(1e6)).to(pred.dtype)[..., None]
    if band_weight is None:
        return ((pred - target).abs() * mask).sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)
    w = band_weight.to(pred.dtype)
    return ((pred - target).abs() * mask * w).sum() / (mask.sum() * w.sum()).clamp(min=1e-8)


class EnvelopeNet(nn.Module):
    """``[B, in_dim, F]`` -> ``[B, F, out_dim]``: non-causal residual convolutions over frames."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 4, kernel: int = 5):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, hidden, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2), nn.GELU(), nn.Conv1d(hidden, hidden, 1))
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.GroupNorm(1, hidden) for _ in range(layers))
        self.out = nn.Conv1d(hidden, out_dim, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z)
        for norm, block in zip(self.norms, self.blocks):
            h = h + block(norm(h))
        return self.out(h).transpose(1, 2)
