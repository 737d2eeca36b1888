"""Teachers for the semantic codebook: HuBERT/WavLM (transformers) and an offline MFCC teacher."""
from __future__ import annotations

from .base import Teacher
from .kmeans import KMeansUnits
from .mfcc import MFCCTeacher
from .ssl import SSLTeacher


def build_teacher(cfg: dict | None) -> Teacher | None:
    """A teacher from a config section: ``{type: mfcc|hubert|wavlm, ...keyword arguments}``."""
    if not cfg:
        return None
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind == "mfcc":
        return MFCCTeacher(**cfg)
    if kind in ("hubert", "wavlm"):
        return SSLTeacher(arch=kind, **cfg)
    raise ValueError(f"unknown teacher type {kind!r}; use mfcc, hubert or wavlm")


__all__ = ["KMeansUnits", "MFCCTeacher", "SSLTeacher", "Teacher", "build_teacher"]
