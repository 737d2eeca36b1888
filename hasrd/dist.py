"""Which share of a job list this process takes, when several processes run one command.

Several processes come from ``accelerate launch`` (or ``torchrun``); each takes every
``world``-th item of the same sorted list. Used by the corpus commands of ``hasrd`` (encode,
decode, enhance) and by the teacher-cache builder (``python -m hasrd.teachers.cache``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    state: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None and self.world > 1:
            self.state.wait_for_everyone()


def distributed(device: str = "cpu") -> Dist:
    """This process's rank and the number of processes (1 without a launcher).

    Several processes come from ``accelerate launch`` (or ``torchrun``). On the CPU, accelerate
    joins them with the gloo backend only when told the run is a CPU one, so ``cpu`` is passed
    whenever the codec runs on the CPU.
    """
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return Dist()
    use_cpu = device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=use_cpu)
    return Dist(state.process_index, state.num_processes, state)


def summary(verb: str, done: int, skipped: int, failed: int, dist: Dist) -> None:
    who = f"[rank {dist.rank}/{dist.world}] " if dist.world > 1 else ""
    text = f"{who}{verb} {done} file(s)"
    if skipped:
        text += f", skipped {skipped} already done"
    if failed:
        text += f", {failed} failed"
    print(text, flush=True)
