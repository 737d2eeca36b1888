"""A 2-process test bed on the CPU: each test starts two gloo processes of ``train.py`` (or of a
small driver) the way ``accelerate launch --multi_gpu --num_processes 2`` does (RANK, WORLD_SIZE,
MASTER_ADDR/PORT in the environment), with a short collective timeout (``train.dist_timeout``) and
a wall-clock limit, so a hang fails the test in seconds instead of hanging CI."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_CONFIGS

#: what a 2-process run may take at most before the test calls it a hang
LIMIT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launch:
    """``n`` processes of ``argv`` (after ``python``) in one process group on the CPU."""

    def __init__(self, argv: list[str], n: int, log_dir: Path):
        port = free_port()
        self.procs, self.logs = [], []
        for rank in range(n):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n),
                   "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
            if n == 1:
                for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
                    env.pop(key)
            log = open(log_dir / f"rank{rank}.log", "w+")
            self.logs.append(log)
            self.procs.append(subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def wait(self, limit: float = LIMIT_S) -> list[int]:
        end = time.time() + limit
        try:
            return [p.wait(timeout=max(1.0, end - time.time())) for p in self.procs]
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"a 2-process run hung for {limit} s:\n{self.output()}")

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)

    def output(self, rank: int | None = None) -> str:
        texts = []
        for r, log in enumerate(self.logs):
            if rank is None or r == rank:
                log.flush()
                log.seek(0)
                texts.append(f"--- rank {r}\n{log.read()}")
        return "\n".join(texts)


def train_argv(out: Path, corpus: Path, *extra: str) -> list[str]:
    return ["train.py", "--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(out), "--no-tensorboard",
            f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200", "train.batch_size=2",
            "train.dist_timeout=60", *extra]


@pytest.fixture
def launch(tmp_path):
    started: list[Launch] = []

    def start(argv: list[str], n: int = 2) -> Launch:
        log_dir = tmp_path / f"logs{len(started)}"
        log_dir.mkdir()
        started.append(Launch(argv, n, log_dir))
        return started[-1]

    yield start
    for run in started:
        run.kill()
