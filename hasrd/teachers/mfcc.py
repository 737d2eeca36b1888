"""The offline teacher: normalised MFCC features and their k-means units.

This is HuBERT's first-iteration target, and it needs no downloaded weights, so a codec can be
distilled on a machine with no model hub. Per-utterance cepstral mean/variance normalisation
removes the channel and much of the speaker's average timbre, leaving mostly the phonetic
trajectory for the semantic codebook to carry.

Frames: one per ``hop`` samples (50 Hz at 16 kHz by default), each centred like the SSL models'
frames (input padded by ``(n_fft - hop) / 2`` on both sides), so ``T`` samples give ``T / hop``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio

from .base import Teacher
from .kmeans import KMeansUnits


class MFCCTeacher(Teacher):
    """Args:
        sample_rate: input rate.
        hop: samples per frame.
        n_fft: analysis window.
        n_mfcc, n_mels: cepstra kept and mel bands.
        deltas: append first and second time derivatives (3 x ``n_mfcc`` features).
        kmeans: path of a centroid file written by :meth:`KMeansUnits.save`, or ``None``.
    """

    def __init__(self, sample_rate: int = 16000, hop: int = 320, n_fft: int = 400, n_mfcc: int = 13,
                 n_mels: int = 40, deltas: bool = True, kmeans: str | None = None):
        super().__init__()
        self.sample_rate, self.hop, self.n_fft = sample_rate, hop, n_fft
        self.frame_rate = sample_rate / hop
        self.deltas = deltas
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc,
            melkwargs={"n_fft": n_fft, "hop_length": hop, "n_mels": n_mels, "center": False},
        )
        self.dim = n_mfcc * (3 if deltas else 1)
        self.kmeans = KMeansUnits.load(kmeans) if kmeans else None
        self.n_units = self.kmeans.n_units if self.kmeans is not None else None

    def set_kmeans(self, kmeans: KMeansUnits) -> None:
        self.kmeans, self.n_units = kmeans, kmeans.n_units

    @torch.no_grad()
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        T = wav.shape[-1]
        if T % self.hop:
            raise ValueError(f"teacher input length {T} is not a multiple of the hop {self.hop}")
        pad = (self.n_fft - self.hop) // 2
        x = F.pad(wav[:, 0].float(), (pad, pad))
        c = self.mfcc(x)  # [B, n_mfcc, frames]
        if self.deltas:
            d1 = torchaudio.functional.compute_deltas(c)
            c = torch.cat([c, d1, torchaudio.functional.compute_deltas(d1)], dim=1)
        c = (c - c.mean(-1, keepdim=True)) / (c.std(-1, keepdim=True) + 1e-5)  # CMVN per utterance
        assert c.shape[-1] == T // self.hop, (c.shape, T, self.hop)
        return c.transpose(1, 2)

    def units(self, features: torch.Tensor) -> torch.Tensor | None:
        return None if self.kmeans is None else self.kmeans(features)
