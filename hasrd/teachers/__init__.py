"""Teachers for the semantic codebook: HuBERT/WavLM (transformers) and an offline MFCC teacher."""
from __future__ import annotations

import functools

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
    if kind not in TEACHERS:
        names = list(TEACHERS)
        raise ValueError(f"unknown teacher type {kind!r}; use {', '.join(names[:-1])} or {names[-1]}")
    return TEACHERS[kind](**cfg)


#: ``teacher.type`` -> constructor (its other keys are the constructor's arguments)
TEACHERS = {
    "mfcc": MFCCTeacher,
    "hubert": functools.partial(SSLTeacher, arch="hubert"),
    "wavlm": functools.partial(SSLTeacher, arch="wavlm"),
}


__all__ = ["KMeansUnits", "MFCCTeacher", "SSLTeacher", "Teacher", "build_teacher"]
