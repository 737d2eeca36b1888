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


def pitch_features(f0: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
    """F0 (Hz) and voicing ``[B, F]`` -> the two channels a network reads ``[B, 2, F]``: octaves
    from 150 Hz and the voicing; no pitch sent (F0 0) reads as zeros."""
    octaves = torch.where(f0 > 0, torch.log2(f0.clamp(min=1e-3) / 150.0), torch.zeros_like(f0))
    return torch.stack([octaves, torch.where(f0 > 0, voicing, torch.zeros_like(voicing))], dim=1)


class EnvelopeNet(nn.Module):
    """``[B, in_dim, F]`` -> ``[B, F, out_dim]``: non-causal residual convolutions over frames.

    Weights saved with fewer input channels load with the new channels' input weights at zero
    (inputs appended later, such as the decoder's pitch channels, start by changing nothing)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 4, kernel: int = 5):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, hidden, 1)
        self._register_load_state_dict_pre_hook(self._widen_input)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2), nn.GELU(), nn.Conv1d(hidden, hidden, 1))
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.GroupNorm(1, hidden) for _ in range(layers))
        self.out = nn.Conv1d(hidden, out_dim, 1)

    def _widen_input(self, state, prefix, *args):
        key = prefix + "inp.weight"
        w = state.get(key)
        own = self.inp.weight
        if w is not None and w.dim() == 3 and w.shape[0] == own.shape[0] and w.shape[1] < own.shape[1]:
            state[key] = torch.cat([w, w.new_zeros(w.shape[0], own.shape[1] - w.shape[1], w.shape[2])], dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z)
        for norm, block in zip(self.norms, self.blocks):
            h = h + block(norm(h))
        return self.out(h).transpose(1, 2)
