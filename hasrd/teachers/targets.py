"""The one definition of a training crop's teacher targets, which both training paths use: the
on-the-fly path (:func:`on_the_fly_targets`) and the cache (:mod:`hasrd.teachers.cache`).

Definition. The teacher's targets for a training crop are the crop's slice of the teacher's
frames of the *whole utterance*: the file as stored (mono, at the teacher's sample rate, no
loudness normalisation or gain augmentation), zero-padded at the end to a whole number of teacher
frames, run through the teacher once. Frame ``k`` covers samples ``[k*hop, (k+1)*hop)``; a crop
starting at ``t`` seconds takes frames ``t*frame_rate ...`` (asserted to be whole frames), and the
slice is brought to the codec's frame rate by :func:`hasrd.nn.resample_frames`. A crop running
past the end of a short file repeats the last frame.

Why the utterance and not the crop: per-utterance normalisation (the MFCC teacher's CMVN) and an
SSL teacher's attention both see their whole input, so features computed on a crop depend on
where the crop happens to start; the k-means units are fitted on whole-utterance features; and a
per-file cache can only hold whole-utterance features. The on-the-fly path therefore computes
exactly what the cache stores.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..nn.framerate import FrameRateError, resample_frames
from .base import Teacher


def teacher_hop(teacher) -> int:
    """Samples per teacher frame at the teacher's sample rate."""
    hop = getattr(teacher, "hop", None) or getattr(getattr(teacher, "net", None), "hop", None)
    return int(hop) if hop else int(round(teacher.sample_rate / teacher.frame_rate))


@torch.no_grad()
def utterance_frames(teacher: Teacher, wav: torch.Tensor) -> dict[str, torch.Tensor]:
    """Teacher frames of a whole utterance.

    Args:
        wav: ``[T]``, ``[1, T]`` or ``[1, 1, T]`` at ``teacher.sample_rate``.

    Returns:
        ``{"features": FloatTensor[frames, dim]}`` plus ``"units": LongTensor[frames]`` if the
        teacher has units; ``frames = max(1, ceil(T / hop))``.
    """
    hop = teacher_hop(teacher)
    x = wav.reshape(1, 1, -1).float()
    n = max(1, math.ceil(x.shape[-1] / hop)) * hop
    if n != x.shape[-1]:
        x = F.pad(x, (0, n - x.shape[-1]))
    teacher.eval()
    feats = teacher.features(x)
    if feats.shape[1] != n // hop:
        raise FrameRateError(f"teacher gave {feats.shape[1]} frames for {n} samples, expected {n // hop}")
    out = {"features": feats[0].float()}
    units = teacher.units(feats)
    if units is not None:
        out["units"] = units[0].long()
    return out


def crop_span(start: int, segment_samples: int, sample_rate: int, teacher_rate: float) -> tuple[int, int]:
    """First teacher frame and number of teacher frames of a crop (in samples at ``sample_rate``).

    Raises :class:`FrameRateError` if the crop does not start and end on teacher frame boundaries.
    """
    k0 = start * teacher_rate / sample_rate
    n = segment_samples * teacher_rate / sample_rate
    if abs(k0 - round(k0)) > 1e-6 or abs(n - round(n)) > 1e-6:
        raise FrameRateError(
            f"a crop of {segment_samples} samples at sample {start} ({sample_rate} Hz) is not a whole number "
            f"of teacher frames at {teacher_rate:g} Hz; the teacher's frame rate must be a multiple of the "
            "codec's (or use teacher.context: crop)"
        )
    return int(round(k0)), int(round(n))


def take_frames(x: torch.Tensor, k0: int, n: int) -> torch.Tensor:
    """Frames ``k0 .. k0+n-1`` of ``x[frames, ...]``; past the end, the last frame is repeated."""
    part = x[k0 : k0 + n]
    if part.shape[0] == n:
        return part
    if x.shape[0] == 0:
        raise FrameRateError("an utterance with no teacher frames")
    last = x[-1:] if part.shape[0] == 0 else part[-1:]
    return torch.cat([part, last.expand(n - part.shape[0], *x.shape[1:])])


def to_codec_rate(frames: dict[str, torch.Tensor], teacher_rate: float, codec_rate: float, num_frames: int) -> dict[str, torch.Tensor]:
    """``{"features": [n, D], "units": [n]}`` at ``teacher_rate`` -> ``num_frames`` at ``codec_rate``.

    The explicit, asserted conversion (linear for features, majority/nearest for units).
    """
    out = {"features": resample_frames(frames["features"].float().unsqueeze(0), teacher_rate, codec_rate, num_frames, mode="linear")[0]}
    if "units" in frames:
        out["units"] = resample_frames(frames["units"].long().unsqueeze(0), teacher_rate, codec_rate, num_frames, mode="nearest")[0]
    return out


def crop_targets(read: Callable[[int, int], dict[str, torch.Tensor]], teacher_rate: float, start: int,
                 segment_samples: int, sample_rate: int, hop: int) -> dict[str, torch.Tensor]:
    """Targets of one crop at the codec frame rate; ``read(k0, n)`` gives the utterance's teacher frames."""
    if segment_samples % hop:
        raise FrameRateError(f"a crop of {segment_samples} samples is not a whole number of codec frames of {hop}")
    k0, n = crop_span(start, segment_samples, sample_rate, teacher_rate)
    return to_codec_rate(read(k0, n), teacher_rate, sample_rate / hop, segment_samples // hop)


@torch.no_grad()
def on_the_fly_targets(teacher: Teacher, utterances: list[torch.Tensor], starts, segment_samples: int,
                       sample_rate: int, hop: int, device=None) -> dict[str, torch.Tensor]:
    """Targets of a batch of crops computed now: ``{"features": [B, F, D], "units": [B, F]}``.

    ``utterances[b]`` is item ``b``'s whole file at the teacher's rate, ``starts[b]`` its crop start
    in samples at ``sample_rate``; the result equals what :meth:`TeacherCache.crop` returns.
    """
    items = []
    for wav, start in zip(utterances, starts):
        frames = utterance_frames(teacher, wav.to(device) if device is not None else wav)
        read = lambda k0, n, fr=frames: {k: take_frames(v, k0, n) for k, v in fr.items()}  # noqa: E731
        items.append(crop_targets(read, teacher.frame_rate, int(start), segment_samples, sample_rate, hop))
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


