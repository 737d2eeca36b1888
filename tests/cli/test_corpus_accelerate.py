"""Corpus mode: two CPU processes under ``accelerate launch`` share a folder, each file once."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hasrd.io import load_tokens
from tests.conftest import ROOT

pytestmark = pytest.mark.multiprocess

EXPECTED = ["a.hsrd", "spk1/b.hsrd", "spk1/c.hsrd", "spk2/deep/d.hsrd", "spk2/silent.hsrd"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch ARGS`` with this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HASRD_DEBUG", None)
    launcher = shutil.which("accelerate")
    cmd = [launcher] if launcher else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]
    return subprocess.run([*cmd, "launch", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def count(stdout: str, word: str) -> int:
    """Files encoded (or skipped), summed over the ranks' summary lines."""
    total = 0
    for line in stdout.splitlines():
        if f"{word} " in line:
            total += int(line.split(f"{word} ")[1].split()[0])
    return total


def manifest_paths(out: Path) -> list[str]:
    return [json.loads(line)["path"] for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_two_process_corpus_encode(tmp_path, model_dir, corpus):
    out = tmp_path / "toks"
    common = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--num_cpu_threads_per_process", "1"]
    # Two real processes on the CPU: accelerate's torchrun-based launcher; hasrd joins them with
    # gloo (with --cpu, accelerate 1.x starts a single process unless MPI is installed).
    proc = accelerate(
        "--multi_gpu", "--num_processes", "2", "--main_process_port", free_port(), *common,
        "-m", "hasrd", "encode", corpus, "-o", out, "--model", model_dir, "--n-q", 2,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    ranks = sorted(line.split("]")[0] for line in proc.stdout.splitlines() if line.startswith("[rank"))
    assert ranks == ["[rank 0/2", "[rank 1/2"], proc.stdout
    assert count(proc.stdout, "encoded") == len(EXPECTED)  # every file by exactly one rank
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.hsrd"))
    assert got == EXPECTED
    paths = manifest_paths(out)
    assert sorted(paths) == EXPECTED and len(paths) == len(set(paths))
    assert not list(out.glob("manifest.jsonl.part*"))
    assert all(load_tokens(out / p)[1]["n_q"] == 2 for p in EXPECTED)

    # an interrupted job finishes on a re-run, with the command line of the docs
    (out / "spk1" / "c.hsrd").unlink()
    proc = accelerate(
        "--cpu", "--num_processes", "2", "--main_process_port", free_port(), *common,
        "-m", "hasrd", "encode", corpus, "-o", out, "--model", model_dir, "--n-q", 2,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert count(proc.stdout, "encoded") == 1 and count(proc.stdout, "skipped") == 4
    assert sorted(manifest_paths(out)) == EXPECTED
    load_tokens(out / "spk1" / "c.hsrd")
