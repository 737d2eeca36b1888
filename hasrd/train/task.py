"""The task protocol: what a model family gives the one training loop (:mod:`hasrd.train.loop`).

A task builds its parts, takes one step on a batch, validates and exports; the loop does
everything else (seeds, the run folder, the lr schedule, signals, ``max_minutes``, logs,
checkpoints, the best model, patience, exact resume). Tasks do not inherit from one another:
the codec task (:mod:`hasrd.train.codec_task`), the enhancer (:mod:`hasrd.enhance.train`), the
token LM (:mod:`hasrd.lm.train`) and speech-to-audio (:mod:`hasrd.star.train`) each implement it.

The table :data:`TASKS` maps a config's ``task:`` to its class, imported only when asked for, so
``hasrd.train`` imports no model family by name.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..io.manifest import spread, spread_indices  # noqa: F401 (re-exported for tasks)
from .config import TrainingError

#: ``task:`` in a config -> "module:class" of its :class:`Task`
TASKS = {
    "codec": "hasrd.train.codec_task:CodecTask",
    "enhance": "hasrd.enhance.train:EnhanceTask",
    "lm": "hasrd.lm.train:LMTask",
    "star": "hasrd.star.train:StarTask",
}


def task_class(name: str) -> type[Task]:
    """The :class:`Task` class of ``task: name`` (a one-line :class:`TrainingError` for an unknown one)."""
    if name not in TASKS:
        raise TrainingError(f"unknown task {name!r} ({', '.join(TASKS)})")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclass
class Parts:
    """What :meth:`Task.build` hands the loop: the training set, how to batch it, and the
    modules the loop puts in training mode."""

    dataset: Any
    collate_fn: Callable
    modules: list = field(default_factory=list)
    num_workers: int = 0


class Task:
    """A model family on the loop. Subclasses set :attr:`exports` and implement the methods."""

    #: the storage dtypes :meth:`export` writes (``train.py --export-dtype`` is checked against
    #: them before anything is read or written)
    export_dtypes: tuple[str, ...] = ("float32",)
    exports = "a model"  #: what :meth:`export` writes, for error messages

    def __init__(self, cfg: dict, loop):
        """``loop``: the :class:`hasrd.train.loop.Loop` that runs this task (its accelerator ``acc``,
        ``train`` section ``t``, ``state``, run folder ``out``, and the services ``optimizer``,
        ``update``, ``main_first``, ``any_process``)."""
        self.cfg = cfg
        self.loop = loop

    @classmethod
    def check_export_dtype(cls, dtype: str) -> None:
        if dtype not in cls.export_dtypes:
            raise TrainingError(f"--export-dtype {dtype}: {cls.exports} is exported as "
                                f"{' or '.join(cls.export_dtypes)} only")

    def build(self, resume: bool) -> Parts:  # pragma: no cover - interface
        """Build the models, optimizers (:meth:`Loop.optimizer`) and data; prepare them with the accelerator."""
        raise NotImplementedError

    def step(self, batch) -> dict[str, float]:  # pragma: no cover - interface
        """One update on ``batch`` (through :meth:`Loop.update`); the figures to log (tensors or floats)."""
        raise NotImplementedError

    def validation_metrics(self) -> set[str]:
        """The names :meth:`validate` can report (``train.best_metric`` is checked against them)."""
        return set()

    def validate(self) -> dict[str, float]:
        """Held-out figures, on the main process (empty elsewhere)."""
        return {}

    def export(self, directory: Path, dtype: str) -> None:  # pragma: no cover - interface
        """Write the trained model to ``directory`` (called on the main process only)."""
        raise NotImplementedError

    def batch_items(self, batch) -> int:
        """Items in one process's batch (for the samples/s figure)."""
        return len(batch)

    #: sample rate of :attr:`val_samples`, the validation audio logged to tensorboard
    sample_rate: int = 16000
    val_samples: list = []


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int) -> float | None:
    """PESQ (wide-band at 16 kHz, else narrow-band) for validation logs; None where PESQ refuses
    (silence, a rate other than 8/16 kHz)."""
    try:
        from pesq import pesq

        return float(pesq(sr, ref, deg, "wb" if sr == 16000 else "nb"))
    except Exception:
        return None
