"""Pitch targets and losses for decoders that render a voice from an F0 contour.

:func:`yin_track` tracks F0 and voicing of a batch of waveforms at the codec's frame rate with the
YIN method (de Cheveigné & Kawahara, 2002) written in batched torch ops, so the targets come from
the training crop itself, on whatever device the batch is on, with no cache to build: the cost is
one FFT cross-correlation per frame (a few milliseconds for a batch of short crops). The evaluator
measures pitch with ``librosa.pyin`` (:func:`hasrd.eval.metrics.pitch_track`); the tests check that
the two agree on speech.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..pitch.track import normalised_difference

#: lowest and highest F0 (Hz) the tracker and the decoders' pitch heads consider
FMIN, FMAX = 50.0, 500.0


@torch.no_grad()
def yin_track(wav: torch.Tensor, sample_rate: int, hop: int, fmin: float = FMIN, fmax: float = FMAX,
              threshold: float = 0.25, silence_db: float = 45.0,
              window_periods: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``wav [B, 1, T]`` or ``[B, T]`` -> ``(f0 [B, F] in Hz, voiced [B, F] bool)``, ``F = ceil(T / hop)``.

    Frame ``f`` is centred on sample ``f * hop + hop / 2`` (the codec's frames). Each frame holds
    an integration window of ``window_periods`` periods of ``fmin`` plus the longest lag; the
    cumulative-mean-normalised difference function is searched for its first local minimum under
    ``threshold`` between the lags of ``fmax`` and ``fmin`` and refined by a parabola. A frame is
    voiced if such a minimum exists and its level is within ``silence_db`` of the crop's loudest
    frame; unvoiced frames get the f0 of their global minimum (meaningless, masked by ``voiced``).
    """
    x = wav.reshape(wav.shape[0], -1).float()
    B, T = x.shape
    frames = -(-T // hop)
    tau_max = int(math.ceil(sample_rate / fmin))
    tau_min = max(2, int(math.floor(sample_rate / fmax)))
    W = int(window_periods * tau_max)  # integration window
    length = W + tau_max + 1
    centre = torch.arange(frames, device=x.device) * hop + hop // 2
    start = centre - length // 2
    pad_l = max(0, -int(start[0]))
    pad_r = max(0, int(start[-1]) + length - T)
    xp = F.pad(x, (pad_l, pad_r))
    idx = (start + pad_l)[:, None] + torch.arange(length, device=x.device)[None, :]
    seg = xp[:, idx]  # [B, F, length]
    seg = seg - seg.mean(-1, keepdim=True)
    cmnd = normalised_difference(seg, W)  # lags 0 .. tau_max
    # first local minimum under the threshold, in [tau_min, tau_max - 1]
    mid = cmnd[..., tau_min:tau_max]
    left, right = cmnd[..., tau_min - 1:tau_max - 1], cmnd[..., tau_min + 1:tau_max + 1]
    cand = (mid < threshold) & (mid <= left) & (mid <= right)
    has = cand.any(-1)
    first = cand.float().argmax(-1)
    best = mid.argmin(-1)
    k = torch.where(has, first, best) + tau_min
    y0 = cmnd.gather(-1, (k - 1)[..., None])[..., 0]
    y1 = cmnd.gather(-1, k[..., None])[..., 0]
    y2 = cmnd.gather(-1, (k + 1)[..., None])[..., 0]
    den = y0 - 2 * y1 + y2
    shift = torch.where(den.abs() > 1e-12, 0.5 * (y0 - y2) / den, torch.zeros_like(den)).clamp(-1, 1)
    f0 = (sample_rate / (k.float() + shift)).clamp(fmin, fmax)
    level = 10 * torch.log10(seg[..., :W].pow(2).mean(-1) + 1e-10)
    loud = level > level.amax(-1, keepdim=True) - silence_db
    return f0, has & loud


def original_pitch(wav: torch.Tensor, sample_rate: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``wav``'s own pitch in the form a pitch-rendering decoder takes in place of its prediction:
    ``(f0 Hz [B, F], voicing logit [B, F])`` from :func:`yin_track`, the voicing as a confident
    logit (+5 voiced, -5 unvoiced)."""
    f0, voiced = yin_track(wav, sample_rate, hop)
    return f0, 10.0 * voiced.float() - 5.0


def pitch_losses(f0_pred: torch.Tensor, voiced_logit: torch.Tensor, f0_target: torch.Tensor,
                 voiced_target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``f0``: mean absolute log2 F0 error in octaves over the target's voiced frames (0 if none);
    ``vuv``: binary cross-entropy of the voicing logits. All tensors ``[B, F]``."""
    n = min(f0_pred.shape[-1], f0_target.shape[-1])
    f0_pred, voiced_logit = f0_pred[..., :n], voiced_logit[..., :n]
    f0_target, voiced_target = f0_target[..., :n], voiced_target[..., :n].float()
    err = (torch.log2(f0_pred.clamp_min(1.0)) - torch.log2(f0_target.clamp_min(1.0))).abs()
    f0 = (err * voiced_target).sum() / voiced_target.sum().clamp_min(1.0)
    vuv = F.binary_cross_entropy_with_logits(voiced_logit, voiced_target)
    return {"f0": f0, "vuv": vuv}
