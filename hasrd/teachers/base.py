"""The teacher interface: frame features (and optionally discrete units) at the teacher's own rate,
plus the one explicit step that brings them to the codec's frame rate."""
from __future__ import annotations

import abc

import torch
from torch import nn

from ..nn.framerate import resample_frames


class Teacher(nn.Module, abc.ABC):
    """A frozen model whose frame representation the semantic codebook learns to carry.

    Subclasses set ``sample_rate``, ``frame_rate``, ``dim`` (feature size) and ``n_units``
    (number of discrete units, or ``None`` if the teacher has no unit inventory).
    """

    sample_rate: int
    frame_rate: float
    dim: int
    n_units: int | None = None

    @abc.abstractmethod
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` at :attr:`sample_rate` -> ``[B, frames, dim]`` at :attr:`frame_rate`."""

    def units(self, features: torch.Tensor) -> torch.Tensor | None:
        """Discrete units ``LongTensor[B, frames]`` of :meth:`features`' output, or ``None``."""
        return None

    @torch.no_grad()
    def targets(self, wav: torch.Tensor, num_frames: int, frame_rate: float) -> dict[str, torch.Tensor]:
        """Distillation targets aligned to a codec with ``num_frames`` frames at ``frame_rate``.

        Returns ``{"features": [B, num_frames, dim]}`` and, if the teacher has units,
        ``"units": LongTensor[B, num_frames]``. The resampling is explicit and asserted: a length
        that the two frame rates do not predict raises :class:`hasrd.nn.FrameRateError`.
        """
        self.eval()
        feats = self.features(wav)
        out = {"features": resample_frames(feats, self.frame_rate, frame_rate, num_frames, mode="linear")}
        units = self.units(feats)
        if units is not None:
            out["units"] = resample_frames(units, self.frame_rate, frame_rate, num_frames, mode="nearest")
        return out

    def train(self, mode: bool = True):  # teachers are always frozen
        return super().train(False)
