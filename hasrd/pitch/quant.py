"""The pitch codebook: one code per frame holding log F0 and voicing.

``f0_bits`` bits of log F0 on ``2 ** f0_bits`` levels spaced evenly in log frequency over
``[fmin, fmax]`` (7 bits over 60-450 Hz: 2.9 octaves in 128 steps, 27 cents a step, so at most
14 cents of error), and ``voicing_bits`` bits of voicing (the tracker's voiced probability on
``2 ** voicing_bits`` levels, 0 = unvoiced, the top level = fully voiced). A code is
``voicing_level * 2 ** f0_bits + f0_level``: one codebook of ``2 ** (f0_bits + voicing_bits)``
entries, stored in token files like every other codebook.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PitchCodebook:
    f0_bits: int = 7
    voicing_bits: int = 3
    fmin: float = 60.0
    fmax: float = 450.0

    def __post_init__(self):
        if not (1 <= self.f0_bits <= 12 and 0 <= self.voicing_bits <= 4):
            raise ValueError(f"pitch codebook: f0_bits must be in 1..12 and voicing_bits in 0..4 "
                             f"(got {self.f0_bits}, {self.voicing_bits})")
        if not 0 < self.fmin < self.fmax:
            raise ValueError(f"pitch codebook: needs 0 < fmin < fmax (got {self.fmin}, {self.fmax})")

    @property
    def size(self) -> int:
        """Entries of the codebook."""
        return 2 ** (self.f0_bits + self.voicing_bits)

    @property
    def bits(self) -> int:
        return self.f0_bits + self.voicing_bits

    def encode(self, f0: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """``f0`` (Hz) and ``voicing`` (0..1), same shape -> int64 codes."""
        n_f0, n_v = 2 ** self.f0_bits, 2 ** self.voicing_bits
        span = math.log(self.fmax / self.fmin)
        pos = torch.log(f0.clamp(self.fmin, self.fmax) / self.fmin) / span * (n_f0 - 1)
        f0_level = pos.round().long().clamp(0, n_f0 - 1)
        v_level = (voicing.clamp(0, 1) * (n_v - 1)).round().long() if n_v > 1 else torch.zeros_like(f0_level)
        return v_level * n_f0 + f0_level

    def decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int codes -> ``(f0 Hz, voicing 0..1)`` as float32 tensors of the same shape."""
        n_f0, n_v = 2 ** self.f0_bits, 2 ** self.voicing_bits
        codes = codes.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.size):
            raise ValueError(f"pitch codes must be in 0..{self.size - 1}")
        f0_level, v_level = codes % n_f0, codes // n_f0
        f0 = self.fmin * torch.exp(f0_level.float() / (n_f0 - 1) * math.log(self.fmax / self.fmin))
        voicing = v_level.float() / (n_v - 1) if n_v > 1 else torch.ones_like(f0)
        return f0, voicing

    def as_config(self) -> dict:
        return {"f0_bits": self.f0_bits, "voicing_bits": self.voicing_bits, "fmin": self.fmin, "fmax": self.fmax}
