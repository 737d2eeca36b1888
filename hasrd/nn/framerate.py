"""Explicit frame-rate conversion between feature sequences (teacher -> codec, branch -> branch).

A 25 Hz codec distilled from a 50 Hz teacher must resample the teacher *on purpose*. This is the one
function that does it, and it checks that the lengths agree with the two rates instead of hiding a
mismatch by truncating to the shorter sequence.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class FrameRateError(ValueError):
    """Two sequences' lengths do not agree with their frame rates."""


def expected_frames(num_frames: int, src_rate: float, dst_rate: float) -> float:
    return num_frames * dst_rate / src_rate


def resample_frames(
    x: torch.Tensor,
    src_rate: float,
    dst_rate: float,
    num_frames: int,
    mode: str = "linear",
    tolerance: int = 1,
) -> torch.Tensor:
    """Resample ``x`` of shape ``[B, T, D]`` (features) or ``[B, T]`` (integer units) in time.

    Args:
        x: the sequence at ``src_rate`` frames per second.
        src_rate, dst_rate: frame rates in Hz.
        num_frames: the number of output frames the caller needs (the codec's frame count).
        mode: ``"linear"`` (features; an integer down-sampling ratio averages frames) or
            ``"nearest"`` (units; an integer down-sampling ratio takes the most frequent unit).
        tolerance: how many frames ``num_frames`` may differ from ``T * dst_rate / src_rate``
            (one frame absorbs the edge rounding of convolutional front ends).

    Raises:
        FrameRateError: ``num_frames`` is not what the two rates predict.
    """
    T = x.shape[1]
    predicted = expected_frames(T, src_rate, dst_rate)
    if abs(predicted - num_frames) > tolerance:
        raise FrameRateError(
            f"{T} frames at {src_rate:g} Hz give {predicted:.1f} frames at {dst_rate:g} Hz, "
            f"but {num_frames} were asked for"
        )
    if T == num_frames:
        return x
    ratio = src_rate / dst_rate
    integer_down = ratio > 1 and abs(ratio - round(ratio)) < 1e-9
    if x.dim() == 2:  # units
        if integer_down:
            r = int(round(ratio))
            need = num_frames * r
            padded = _edge_pad(x.unsqueeze(-1), need).squeeze(-1)[:, :need]
            return torch.mode(padded.reshape(x.shape[0], num_frames, r), dim=-1).values
        idx = torch.clamp((torch.arange(num_frames, device=x.device) * ratio).floor().long(), max=T - 1)
        return x[:, idx]
    if integer_down:
        r = int(round(ratio))
        need = num_frames * r
        padded = _edge_pad(x, need)[:, :need]
        return padded.reshape(x.shape[0], num_frames, r, x.shape[-1]).mean(dim=2)
    y = F.interpolate(x.transpose(1, 2).float(), size=num_frames, mode=mode if mode != "nearest" else "nearest",
                      **({"align_corners": False} if mode == "linear" else {}))
    return y.transpose(1, 2).to(x.dtype)


def _edge_pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat the last frame of ``[B, T, D]`` up to ``length`` frames (used for <= tolerance frames)."""
    T = x.shape[1]
    if T >= length:
        return x
    return torch.cat([x, x[:, -1:].expand(x.shape[0], length - T, *x.shape[2:])], dim=1)
