#!/usr/bin/env python
"""Training throughput on the CPU: 1 process x 2 threads against 2 processes x 1 thread.

    python benchmarks/train_throughput.py [--config codec_configs/debug/hasrd_tiny.yaml]
        [--steps 20] [--warmup 3] [--global-batch N] [--json OUT] [--set key=value ...]

Both runs train the same config on the same generated speech-like corpus, in one invocation:

(a) ``python train.py`` in one process with 2 threads (``OMP_NUM_THREADS=2``, ``torch.set_num_threads(2)``);
(b) ``accelerate launch --multi_gpu --num_processes 2`` with 1 thread each (``OMP_NUM_THREADS=1``,
    ``torch.set_num_threads(1)``, gloo on the CPU).

Same *global* batch in both (``--global-batch``, default twice the config's ``train.batch_size``,
so (b) keeps the config's per-process batch): each optimizer step then does the same work on the
same number of samples, and the ratio is the speed-up of one and the same training. With the same
per-process batch, (b) would train with a twice larger batch, a different optimisation.

Samples/s exclude start-up (imports, model building, k-means units, process-group set-up) and the
first ``--warmup`` steps: the trainer logs, at every step ``s`` (``log_every=1``), the cumulative
``samples_per_s = s * global_batch / (time since the loop started)``, so the loop time at step
``s`` is ``s * global_batch / samples_per_s``; throughput is ``steps * global_batch`` over the loop
time between step ``warmup`` and ``warmup + steps``. The final checkpoint and export come after it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "codec_configs" / "debug" / "hasrd_tiny.yaml"


def worker(argv: list[str]) -> int:
    """``--worker THREADS TRAIN_ARGS...``: set torch's thread count, then run train.py's main."""
    threads, rest = int(argv[0]), argv[1:]
    import torch

    torch.set_num_threads(threads)
    from hasrd.train import main

    return main(rest)


def make_corpus(directory: Path, files: int, seconds: float, sample_rate: int) -> None:
    """Voiced, amplitude-modulated harmonic tones with noise: speech-like enough for a codec."""
    import numpy as np
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        rng = np.random.default_rng(1000 + i)
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        voiced = sum(np.sin(k * phase) * rng.uniform(0.2, 1) / k for k in range(1, 12))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t) ** 2
        x = voiced * envelope + 0.02 * rng.standard_normal(len(t))
        sf.write(directory / f"gen{i:03d}.wav", (0.3 * x / np.abs(x).max()).astype("float32"), sample_rate)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(cfg_path: Path, cfg: dict, out: Path, data: Path, batch: int, max_steps: int, extra: list[str]) -> list[str]:
    args = ["--config", str(cfg_path), "--output-dir", str(out), "--no-tensorboard", f"data.train={data}",
            f"train.max_steps={max_steps}", f"train.batch_size={batch}", "train.log_every=1",
            "train.ckpt_every=1000000000", "train.val_every=0"]
    teacher = cfg.get("teacher") or {}
    head_units = (cfg.get("model", {}).get("semantic_head") or {}).get("n_units", 0)
    if teacher and head_units and not teacher.get("n_units") and not teacher.get("kmeans"):
        args.append(f"teacher.n_units={head_units}")  # the debug configs leave the unit count to the command line
    return args + list(extra)


def measure(metrics: Path, global_batch: int, warmup: int, steps: int) -> dict:
    """Samples/s over steps (warmup, warmup+steps] from the trainer's cumulative samples_per_s."""
    rate = {}
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "samples_per_s" in row:
            rate[int(row["step"])] = float(row["samples_per_s"])
    end = warmup + steps
    if end not in rate or (warmup and warmup not in rate):
        raise RuntimeError(f"{metrics}: no samples_per_s at steps {warmup} and {end}")

    def loop_time(step: int) -> float:
        return step * global_batch / rate[step] if step else 0.0

    span = loop_time(end) - loop_time(warmup)
    if span <= 0:
        raise RuntimeError(f"{metrics}: non-increasing loop time")
    return {"samples_per_s": steps * global_batch / span, "loop_seconds": span,
            "steps_per_s": steps / span, "first_steps_seconds": loop_time(warmup)}


def run(name: str, cmd: list[str], threads: int, out: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"[{name}] {' '.join(cmd[:8])} ...", flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    (out / f"{name}.log").write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"train_throughput: the {name} run failed (exit {proc.returncode}); log: {out / (name + '.log')}")
    return wall


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="training config (default: the tiny debug one)")
    p.add_argument("--steps", type=int, default=20, help="measured steps, after the warm-up")
    p.add_argument("--warmup", type=int, default=3, help="first steps left out of the measurement")
    p.add_argument("--global-batch", type=int, default=None, help="samples per optimizer step in both runs (even; default 2 x train.batch_size)")
    p.add_argument("--files", type=int, default=16, help="generated training files")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each generated file")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--workdir", type=Path, default=None, help="keep data, runs and logs here (default: a temp folder, removed)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides for both runs")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")

    from hasrd.config import load_config

    cfg_path = args.config.resolve()
    cfg = load_config(cfg_path, args.set)
    global_batch = args.global_batch or 2 * int(cfg.get("train", {}).get("batch_size", 8))
    if global_batch < 2 or global_batch % 2:
        p.error(f"--global-batch {global_batch}: must be even (split over 2 processes)")
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hasrd-throughput-")
        work = Path(tmp.name)
    else:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "data"
        if not data.is_dir():
            make_corpus(data, args.files, args.seconds, int(cfg["model"].get("sample_rate", 16000)))
        max_steps = args.warmup + args.steps
        script = str(Path(__file__).resolve())
        results = {}
        for name, procs, threads in (("1proc_2threads", 1, 2), ("2proc_1thread", 2, 1)):
            out = work / name
            if out.exists():
                import shutil

                shutil.rmtree(out)
            targs = train_args(cfg_path, cfg, out, data, global_batch // procs, max_steps, args.set)
            if procs == 1:
                cmd = [sys.executable, script, "--worker", str(threads), *targs]
            else:
                cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(procs),
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--num_cpu_threads_per_process", str(threads), "--main_process_port", str(free_port()),
                       script, "--worker", str(threads), *targs]
            wall = run(name, cmd, threads, work)
            r = measure(out / "metrics.jsonl", global_batch, args.warmup, args.steps)
            results[name] = {"processes": procs, "threads_per_process": threads,
                             "batch_per_process": global_batch // procs, "wall_seconds": wall, **r}
        ratio = results["2proc_1thread"]["samples_per_s"] / results["1proc_2threads"]["samples_per_s"]
        report = {
            "config": str(args.config), "overrides": args.set, "global_batch": global_batch,
            "warmup_steps": args.warmup, "measured_steps": args.steps,
            "segment_seconds": float(cfg.get("train", {}).get("segment_seconds", 1.0)),
            "runs": results, "ratio_2proc_over_1proc": ratio,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "torch": __import__("torch").__version__},
        }
        print(f"\nconfig {args.config}, global batch {global_batch}, {args.steps} steps after {args.warmup} warm-up")
        for name, r in results.items():
            print(f"  {r['processes']} process(es) x {r['threads_per_process']} thread(s), batch {r['batch_per_process']}"
                  f"/process: {r['samples_per_s']:.2f} samples/s ({r['steps_per_s']:.3f} steps/s)")
        print(f"  ratio 2-proc / 1-proc: {ratio:.3f}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
