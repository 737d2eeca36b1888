#!/usr/bin/env python3
"""The GAN phase on an accelerator, in one command of at most 9 minutes (``bash scripts/gpu_run.sh``).

Runs on the accelerator machine, in the repository root, with ``gpu_bundle/`` carried beside it
(built here by ``scripts/gpu_bundle.sh``); docs/training.md, section "On an accelerator":

1. installs the carried wheels that the machine lacks into ``/tmp/site`` (none if all are there);
2. a preflight: hasrd's training path imports, and a carried ``.opus`` file reads through
   ``hasrd.io.audio.load_audio`` (training reads the Opus corpus directly; nothing is decoded ahead);
3. CUDA-only checks into ``OUT/checks.json``: (i) a few steps of ``train.py`` in bf16 (accelerate
   mixed precision) with the default model's config, GAN on, losses finite, and the same in fp16
   (the gradient scaler with the generator's and the discriminator's optimizers: a skipped
   overflow step must not stop the run); (ii) the shipped codec's
   encode/decode on CUDA against the CPU (fraction of equal codes, decoded max abs difference);
   (iii) steps/s of the default's architecture with its discriminators at the training batch size,
   float32 and bf16;
4. the GAN phase resumed from the shipped default (the recipe of docs/default_model.md, "The GAN
   phase": decoder only, codes frozen, discriminators on from step 0) for ``--minutes`` (cut to what
   the 9 minutes leave), stopped by ``train.max_minutes`` with a checkpoint, and exported as float16;
5. ``OUT/``: ``checks.json``, ``metrics.jsonl`` (the GAN run's), ``model/config.json`` +
   ``model/model.safetensors`` (float16, about 9 MB) and ``log.txt``: five files, each under 16 MiB.

``--cpu-dry-run`` runs the same path on this CPU machine: the default's config with tiny
overrides (batch 2, 0.32 s crops) for ``--minutes`` (1 by default); the CUDA-only checks are
skipped with a line saying so, and their code runs on the CPU with 3 steps to test the plumbing.
Options may also be given as environment variables (``GPU_RUN_MINUTES``, ``OUT``, ...; see --help).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
#: the GAN recipe of docs/default_model.md ("The GAN phase", third try): the shipped decoder against the
#: discriminators from the first step; encoder, codebooks and semantic head frozen (codes unchanged)
GAN_RECIPE = ["train.init_from=hasrd/pretrained/default", "model.freeze=[encoder,quantizer,semantic_head]",
              "teacher=null", "train.disc_start=0", "train.warmup_steps=200", "train.lr=0.0002",
              "train.lr_decay=0.99999", "train.max_steps=100000"]
#: tiny overrides of the default's config for --cpu-dry-run
CPU_TINY = ["train.segment_seconds=0.32"]  # and batch 2 (--batch-size's default there)
RESERVE_S = 75  # kept from the budget for the GAN run's set-up, the float16 export and the copies
LOG: list[str] = []


def say(msg: str) -> None:
    line = f"[gpu_run {time.strftime('%H:%M:%S')}] {msg}"
    LOG.append(line)
    print(line, flush=True)


class RunError(RuntimeError):
    """The run cannot go on (the message is the one line printed)."""


# ------------------------------------------------------------------------------------ options
def env(name: str, default):
    return os.environ.get(name, default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_run.sh", description="The GAN phase on an accelerator (docs/training.md).")
    p.add_argument("--minutes", type=float, default=None,
                   help="minutes of GAN training (env GPU_RUN_MINUTES; default 5, or 1 with --cpu-dry-run); cut to "
                        "what the budget leaves")
    p.add_argument("--out", default=env("OUT", None), help="where the results go (env OUT)")
    p.add_argument("--config", default=env("GPU_RUN_CONFIG", "codec_configs/hasrd_cpu_istft.yaml"),
                   help="training config (env GPU_RUN_CONFIG; default the shipped model's)")
    p.add_argument("--bundle", default=env("GPU_RUN_BUNDLE", "gpu_bundle"), help="the bundle folder (env GPU_RUN_BUNDLE)")
    p.add_argument("--budget-s", type=float, default=float(env("GPU_RUN_BUDGET_S", 540)),
                   help="wall-clock budget of the whole command in seconds (env GPU_RUN_BUDGET_S; default 540)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=env("GPU_RUN_PRECISION", "fp32"),
                   help="the GAN run's precision (env GPU_RUN_PRECISION; default fp32)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="per-step batch (env GPU_RUN_BATCH; default 16, the recipe's; 2 with --cpu-dry-run)")
    p.add_argument("--workers", type=int, default=None, help="data-loader workers (env GPU_RUN_WORKERS; default 8, CPU 1)")
    p.add_argument("--check-steps", type=int, default=int(env("GPU_RUN_CHECK_STEPS", 40)),
                   help="steps of each throughput run (env GPU_RUN_CHECK_STEPS; the first 10 are left out of the rate)")
    p.add_argument("--no-checks", action="store_true", help="skip the checks: all the time goes to the GAN run")
    p.add_argument("--cpu-dry-run", action="store_true", help="the same path on the CPU, tiny, checks as plumbing only")
    p.add_argument("--work", default=env("GPU_RUN_WORK", "/tmp/gpu_run"), help="scratch folder (runs, logs)")
    p.add_argument("--site", default=env("GPU_RUN_SITE", "/tmp/site"), help="where the wheels are installed")
    p.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    p.add_argument("extra", nargs="*", help="more train.py overrides for the GAN run (key=value)")
    return p


# ------------------------------------------------------------------------------------ install
def wheel_dist(path: Path) -> tuple[str, str]:
    import re

    parts = path.name.split("-")
    return re.sub(r"[-_.]+", "-", parts[0]).lower(), parts[1]


def install_wheels(wheels: Path, site: Path, python: str, dry_run: bool) -> dict:
    """Install the carried wheels whose distribution this Python lacks into ``site`` (``--no-deps``).

    Present distributions are left alone (the machine's own version wins; a different version is
    reported). With ``dry_run`` (another Python than the accelerator's) nothing is installed: pip
    only resolves every wheel for CPython 3.12 on manylinux x86-64 (``pip install --dry-run``).
    """
    import importlib.metadata as md

    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not files:
        say(f"install: no wheels in {wheels}: nothing to install")
        return {"wheels": 0, "installed": [], "present": []}
    missing, present = [], []
    for w in files:
        dist, version = wheel_dist(w)
        try:
            have = md.version(dist)
            present.append(f"{dist}=={have}" + ("" if have == version else f" (carried {version})"))
        except md.PackageNotFoundError:
            missing.append(w)
    t0 = time.time()
    result = {"wheels": len(files), "present": present, "installed": [], "site": str(site)}
    if dry_run:
        cmd = [python, "-m", "pip", "install", "-q", "--dry-run", "--no-index", "--no-deps", "--ignore-installed",
               "--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", "--target", str(site)]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        r = subprocess.run(cmd + [str(w) for w in files], capture_output=True, text=True)
        if r.returncode != 0:
            raise RunError(f"install: pip does not accept the wheels for CPython 3.12: {r.stderr.strip().splitlines()[-1:]}")
        result["dry_run"] = (f"pip install --dry-run accepted all {len(files)} wheels for CPython 3.12 manylinux x86-64; "
                             f"{len(missing)} would be installed here ({', '.join(wheel_dist(w)[0] for w in missing) or 'none'})")
        say(f"install (dry run): {result['dry_run']}")
        return result
    if missing:
        site.mkdir(parents=True, exist_ok=True)
        cmd = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--upgrade", "--target", str(site)] + [str(w) for w in missing]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RunError(f"install: pip failed: {r.stderr.strip().splitlines()[-1:]}")
        result["installed"] = [f"{wheel_dist(w)[0]}=={wheel_dist(w)[1]}" for w in missing]
    result["seconds"] = round(time.time() - t0, 1)
    say(f"install: {len(result['installed'])} wheels into {site} in {result['seconds']} s "
        f"({' '.join(result['installed']) or 'none missing'}); already present: {len(present)}")
    return result


# ------------------------------------------------------------------------------------ helpers
def run_logged(cmd: list[str], log: Path, timeout: float, env_extra: dict | None = None) -> tuple[int, float]:
    """Run ``cmd`` with output to ``log``; on timeout SIGTERM (the trainer then checkpoints), then SIGKILL."""
    e = {**os.environ, **(env_extra or {})}
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=e, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            rc = rc if rc else 124
    return rc, time.time() - t0


def tail(path: Path, n: int = 5) -> list[str]:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except FileNotFoundError:
        return []
    return [x for x in text.splitlines() if x.strip()][-n:]


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def rate_between(rows: list[dict], first: int, last: int, batch: int) -> dict | None:
    """Steps/s over steps (first, last] from the trainer's cumulative samples_per_s (see
    benchmarks/train_throughput.py): the loop time at step s is s * batch / samples_per_s."""
    sps = {int(r["step"]): float(r["samples_per_s"]) for r in rows if "samples_per_s" in r}
    if first not in sps or last not in sps:
        return None
    span = last * batch / sps[last] - first * batch / sps[first]
    return {"steps_per_s": (last - first) / span, "samples_per_s": (last - first) * batch / span,
            "steps": last - first}


def train_cmd(python: str, config: str, run: Path, overrides: list[str]) -> list[str]:
    return [python, "train.py", "--config", config, "--output-dir", str(run), "--no-tensorboard", *overrides]


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ checks
def train_check(name: str, args, data: list[str], steps: int, precision: str, device_env: dict, timeout: float) -> dict:
    """``steps`` steps of train.py with the default's config (whole codec, teacher, GAN on from step
    0): losses finite, and steps/s over the steps after the 10th."""
    run = Path(args.work) / name
    shutil.rmtree(run, ignore_errors=True)
    warm = min(10, max(1, steps // 3))
    ov = data + [f"train.batch_size={args.batch_size}", "train.disc_start=0", "train.max_steps=" + str(steps),
                 "train.log_every=1", "train.val_every=0", "data.val=null", "train.ckpt_every=1000000",
                 "train.kmeans_frames=5000", f"train.num_workers={args.workers}",
                 "train.init_from=hasrd/pretrained/default"] + (CPU_TINY if args.cpu_dry_run else [])
    e = dict(device_env)
    if precision in ("bf16", "fp16"):
        e["ACCELERATE_MIXED_PRECISION"] = precision
    rc, took = run_logged(train_cmd(args.python, args.config, run, ov), Path(args.work) / f"{name}.log", timeout, e)
    rows = read_metrics(run / "metrics.jsonl")
    losses = [r["loss/total"] for r in rows if "loss/total" in r]
    res = {"precision": precision, "rc": rc, "seconds": round(took, 1), "steps_logged": len(losses),
           "skipped_steps": sum(1 for r in rows if r.get("skipped")), "batch_size": args.batch_size,
           "all_finite": bool(losses) and all(math.isfinite(x) for x in losses),
           "loss_total_first_last": [losses[0], losses[-1]] if losses else None,
           "loss_mel_last": next((r["loss/mel"] for r in reversed(rows) if "loss/mel" in r), None),
           "loss_disc_last": next((r["loss/disc"] for r in reversed(rows) if "loss/disc" in r), None)}
    res["rate"] = rate_between(rows, warm, steps, args.batch_size)
    res["ok"] = rc == 0 and res["all_finite"] and res["steps_logged"] == steps
    if not res["ok"]:
        res["log_tail"] = tail(Path(args.work) / f"{name}.log", 8)
    rate = f"{res['rate']['steps_per_s']:.2f} steps/s" if res["rate"] else "no rate"
    say(f"check {name}: {'ok' if res['ok'] else 'FAILED'} ({precision}, {res['steps_logged']}/{steps} steps, "
        f"finite={res['all_finite']}, {rate}, {took:.0f} s)")
    return res


CODEC_CHECK = r"""
import json, sys, time
from pathlib import Path
import torch
from hasrd.codecs import load_codec
from hasrd.io.audio import load_audio
out, dev = sys.argv[1], sys.argv[2]
full = dev == "cuda" or sys.argv[3:] == ["full"]  # "full": the CUDA branch on the CPU (to test this script)
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
files = sorted(Path("hasrd/assets/eval").glob("*.wav"))
xs = [torch.from_numpy(load_audio(f, 16000)[0][:, : 16000 * 6]).unsqueeze(0) for f in files]
cpu = load_codec("default").eval()
res = {"device": dev, "files": len(files), "seconds_audio": sum(x.shape[-1] for x in xs) / 16000}
res["torch"] = torch.__version__
if dev == "cuda":
    res["device_name"] = torch.cuda.get_device_name(0)
acc = load_codec("default").eval().to(dev)
codes_cpu = [cpu.encode(x) for x in xs]
y_cpu = [cpu.decode(c) for c in codes_cpu]
for tf32 in (True, False):  # cuDNN convolutions use TF32 by default; matmuls do not
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    codes = [acc.encode(x.to(dev)).cpu() for x in xs]
    eq = torch.cat([(a == b).flatten(1) for a, b in zip(codes, codes_cpu)], dim=1)[0]
    per_cb = torch.cat([(a == b)[0] for a, b in zip(codes, codes_cpu)], dim=1).float().mean(1).tolist()
    ys = [acc.decode(c.to(dev)).cpu() for c in codes_cpu]  # the CPU's codes decoded on the device
    diff = max(float((a - b).abs().max()) for a, b in zip(ys, y_cpu))
    err = sum(float(((a - b) ** 2).sum()) for a, b in zip(ys, y_cpu))
    sig = sum(float((b ** 2).sum()) for b in y_cpu)
    res["tf32" if tf32 else "no_tf32"] = {
        "codes_equal_fraction": float(eq.float().mean()), "codes_equal_per_codebook": per_cb,
        "decoded_max_abs_diff": diff, "decoded_snr_db": 10 * __import__("math").log10(sig / max(err, 1e-30))}
    if not full:
        break
torch.backends.cudnn.allow_tf32 = True
torch.backends.cuda.matmul.allow_tf32 = False
if full:  # real-time factor of encode + decode on 2 s clips, batched
    batch = torch.cat([x[..., : 16000 * 2] for x in xs if x.shape[-1] >= 32000])
    for name, m, d in (("cpu", cpu, "cpu"), ("device", acc, dev)):
        m.decode(m.encode(batch.to(d)))
        sync()
        t0 = time.time()
        m.decode(m.encode(batch.to(d)))
        sync()
        res[f"encode_decode_rtf_{name}"] = (time.time() - t0) / (batch.shape[0] * 2.0)
json.dump(res, open(out, "w"), indent=1)
"""


CODES_CHECK = r"""
import json, sys
from pathlib import Path
import torch
from hasrd.codecs import load_codec
from hasrd.io.audio import load_audio
model, out, dev = sys.argv[1], sys.argv[2], sys.argv[3]
old, new = load_codec("default").eval().to(dev), load_codec(model).eval().to(dev)
files = sorted(Path("hasrd/assets/eval").glob("*.wav"))[:4]
eq = n = 0
err = sig = 0.0
for f in files:
    x = torch.from_numpy(load_audio(f, 16000)[0][:, : 16000 * 6]).unsqueeze(0).to(dev)
    a, b = old.encode(x), new.encode(x)
    eq, n = eq + int((a == b).sum()), n + a.numel()
    ya, yb = old.decode(a), new.decode(a)
    err, sig = err + float(((ya - yb) ** 2).sum()), sig + float((ya ** 2).sum())
json.dump({"files": len(files), "codes_equal_fraction": eq / n, "decoded_rel_rms_diff": (err / max(sig, 1e-30)) ** 0.5},
          open(out, "w"))
"""


def codec_check(args, device: str, device_env: dict, timeout: float) -> dict:
    out = Path(args.work) / "codec_check.json"
    out.unlink(missing_ok=True)
    rc, took = run_logged([args.python, "-c", CODEC_CHECK, str(out), device], Path(args.work) / "codec_check.log", timeout,
                          device_env)
    if rc != 0 or not out.is_file():
        res = {"ok": False, "rc": rc, "log_tail": tail(Path(args.work) / "codec_check.log", 8)}
        say(f"check codec: FAILED (rc {rc}): {res['log_tail'][-1:]}")
        return res
    res = json.loads(out.read_text())
    main = res["tf32"]
    res["ok"] = main["codes_equal_fraction"] > 0.95 and main["decoded_max_abs_diff"] < 0.05
    extra = ""
    if "no_tf32" in res:
        extra = (f"; without TF32 {res['no_tf32']['codes_equal_fraction']:.4f} equal, "
                 f"max abs diff {res['no_tf32']['decoded_max_abs_diff']:.2e}")
    say(f"check codec ({device} against the CPU): {main['codes_equal_fraction']:.4f} of the codes equal, decoded max abs "
        f"diff {main['decoded_max_abs_diff']:.2e} (SNR {main['decoded_snr_db']:.1f} dB){extra} ({took:.0f} s)")
    return res


# ------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.time()
    if args.minutes is None:
        args.minutes = float(env("GPU_RUN_MINUTES", 1 if args.cpu_dry_run else 5))
    if args.batch_size is None:
        args.batch_size = int(env("GPU_RUN_BATCH", 2 if args.cpu_dry_run else 16))
    if args.workers is None:
        args.workers = int(env("GPU_RUN_WORKERS", 1 if args.cpu_dry_run else 8))
    if not args.out:
        print("gpu_run: error: no output folder: give --out DIR or set OUT", file=sys.stderr)
        return 2
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    checks: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "mode": "cpu-dry-run" if args.cpu_dry_run else "accelerator",
                    "args": {k: v for k, v in vars(args).items() if k != "python"}}
    try:
        rc = _run(args, out, work, checks, t_start)
    except RunError as exc:
        say(f"error: {exc}")
        checks["error"] = str(exc)
        rc = 1
    checks["seconds"] = round(time.time() - t_start, 1)
    write_json(out / "checks.json", checks)
    tails = []
    for name in ("codec_check", "train_bf16", "train_fp32", "gan", "export", "codes_check"):
        lines = tail(work / f"{name}.log", 25)
        if lines:
            tails += ["", f"----- last lines of {name}.log -----", *lines]
    (out / "log.txt").write_text("\n".join(LOG + tails)[-4 * MIB:] + "\n")
    say(f"done in {checks['seconds']:.0f} s (rc {rc}); results in {out}: {', '.join(sorted(_listing(out)))}")
    return rc


def _short(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (train.py runs there)."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def _listing(out: Path) -> list[str]:
    return [f"{p.relative_to(out)} ({p.stat().st_size / MIB:.2f} MiB)" for p in out.rglob("*") if p.is_file()]


def _run(args, out: Path, work: Path, checks: dict, t_start: float) -> int:
    bundle = ROOT / args.bundle
    corpus = bundle / "corpus"
    train_m, val_m = corpus / "train.jsonl", corpus / "val.jsonl"
    if not train_m.is_file():
        raise RunError(f"{train_m} is missing: build the bundle with bash scripts/gpu_bundle.sh and carry gpu_bundle")
    data = [f"data.train={_short(train_m)}"]
    data_val = [f"data.val={_short(val_m)}"] if val_m.is_file() else ["data.val=null"]

    # 1. wheels
    checks["install"] = install_wheels(bundle / "wheels", Path(args.site), args.python, dry_run=args.cpu_dry_run)
    paths = ([args.site] if checks["install"]["installed"] else []) + [str(ROOT)]
    old = os.environ.get("PYTHONPATH")
    device_env = {"PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])), "TQDM_MININTERVAL": "5",
                  "PYTHONUNBUFFERED": "1"}

    # 2. preflight: imports, CUDA, and one carried .opus through hasrd's loader
    first = json.loads(train_m.read_text().splitlines()[0])["path"]
    code = ("import json, torch, hasrd.train.loop, soundfile\n"
            "from hasrd.io.audio import load_audio\n"
            f"x, sr = load_audio({str(corpus / first)!r}, 16000)\n"
            "print(json.dumps({'cuda': torch.cuda.is_available(), 'torch': torch.__version__, "
            "'soundfile': soundfile.__version__, 'libsndfile': soundfile.__libsndfile_version__, "
            "'opus_read_seconds': x.shape[-1] / sr, 'soundfile_from': soundfile.__file__}))")
    r = subprocess.run([args.python, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, **device_env}, timeout=120)
    if r.returncode != 0:
        raise RunError(f"preflight failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    pre = json.loads(r.stdout.strip().splitlines()[-1])
    checks["preflight"] = pre
    say(f"preflight: torch {pre['torch']}, CUDA {pre['cuda']}, soundfile {pre['soundfile']} (libsndfile "
        f"{pre['libsndfile']}) reads the Opus corpus ({first}: {pre['opus_read_seconds']:.2f} s)")
    if not args.cpu_dry_run and not pre["cuda"]:
        raise RunError("no CUDA device visible to torch (use --cpu-dry-run on a CPU machine)")
    device = "cpu" if args.cpu_dry_run else "cuda"
    write_json(out / "checks.json", checks)

    # 3. checks
    if args.no_checks:
        say("checks: skipped (--no-checks)")
    else:
        steps = 3 if args.cpu_dry_run else max(12, args.check_steps)
        if args.cpu_dry_run:
            say("CUDA-only checks skipped (--cpu-dry-run): (i) bf16 on CUDA, (ii) CUDA against CPU, (iii) CUDA steps/s; "
                "their code runs on the CPU with 3 steps to test the plumbing only")
        # the train checks read a 512-utterance part of the corpus: their set-up stays short
        subset = work / "check_train.jsonl"
        lines = train_m.read_text().splitlines()[:512]
        subset.write_text("".join(json.dumps({**json.loads(x), "path": str(corpus / json.loads(x)["path"])}) + "\n"
                                  for x in lines))
        data_check = [f"data.train={subset}"]
        results = {}
        # each check gets what the budget leaves after the GAN run's minimum (a minute) and the reserve
        slow = 8 if args.cpu_dry_run else 1  # the CPU's steps take seconds, bf16 ones tens of seconds

        def room(want: float) -> float:
            return min(want, t_start + args.budget_s - time.time() - RESERVE_S - 60)

        plan = [("codec_cuda_vs_cpu", 120 * slow), ("train_bf16", (60 + 3 * steps) * slow),
                ("train_fp32", (60 + 3 * steps) * slow)]
        if not args.cpu_dry_run:  # fp16's gradient scaler with the GAN's two optimizers (a CPU has no fp16 AMP)
            plan.append(("train_fp16", (60 + 3 * steps) * slow))
        for name, want in plan:
            timeout = room(want)
            if timeout < 30:
                say(f"check {name}: skipped, the budget is spent ({timeout:.0f} s left for it)")
                results[name] = {"ok": False, "skipped": "budget"}
                continue
            if name == "codec_cuda_vs_cpu":
                results[name] = codec_check(args, device, device_env, timeout)
            else:
                precision = name.split("_")[1]
                n = 2 if args.cpu_dry_run and precision == "bf16" else steps
                results[name] = train_check(name, args, data_check, n, precision, device_env, timeout)
            write_json(out / "checks.json", {**checks, "checks": results})
        thr = {p: (results[f"train_{p}"].get("rate") or {}).get("steps_per_s") for p in ("fp32", "bf16")}
        thr["bf16_over_fp32"] = thr["bf16"] / thr["fp32"] if thr["bf16"] and thr["fp32"] else None
        results["throughput"] = {"what": f"whole default codec + teacher + discriminators, batch {args.batch_size} x "
                                         f"{0.32 if args.cpu_dry_run else 0.64} s, steps after the first "
                                         f"{min(10, max(1, steps // 3))}", "steps_per_s": thr}
        if args.cpu_dry_run:
            for v in results.values():
                v["skipped_cuda"] = "--cpu-dry-run: ran on the CPU, tiny, for the plumbing only"
        checks["checks"] = results
        write_json(out / "checks.json", checks)

    # 4. the GAN phase
    left = args.budget_s - (time.time() - t_start) - RESERVE_S
    minutes = min(args.minutes, left / 60)
    if minutes < 0.25:
        raise RunError(f"only {left:.0f} s of the {args.budget_s:.0f} s budget left for the GAN run: not started")
    if minutes < args.minutes:
        say(f"GAN run: {args.minutes:g} min asked, {minutes:.2f} min fit in the {args.budget_s:.0f} s budget")
    run = work / "gan"
    shutil.rmtree(run, ignore_errors=True)
    ov = data + data_val + GAN_RECIPE + [f"train.batch_size={args.batch_size}", f"train.max_minutes={minutes:.3f}",
                                         "train.val_every=500", "train.log_every=50", "train.ckpt_every=1000",
                                         f"train.num_workers={args.workers}"]
    ov += CPU_TINY if args.cpu_dry_run else []
    ov += list(args.extra)
    e = dict(device_env)
    if args.precision == "bf16":
        e["ACCELERATE_MIXED_PRECISION"] = "bf16"
    say(f"GAN run: {minutes:.2f} min on {device} ({args.precision}), batch {args.batch_size}, {args.workers} workers: "
        f"train.py --config {args.config} {' '.join(ov)}")
    rc, took = run_logged(train_cmd(args.python, args.config, run, ov), work / "gan.log", minutes * 60 + 150, e)
    rows = read_metrics(run / "metrics.jsonl")
    train_rows = [r for r in rows if "loss/total" in r]
    gan = {"rc": rc, "seconds": round(took, 1), "minutes_asked": args.minutes, "max_minutes": round(minutes, 3),
           "precision": args.precision, "steps": train_rows[-1]["step"] if train_rows else 0,
           "steps_per_s": (train_rows[-1]["samples_per_s"] / args.batch_size) if train_rows else None,
           "last": {k: v for k, v in (train_rows[-1] if train_rows else {}).items() if k.startswith(("loss/", "step"))},
           "val": [r for r in rows if any(k.startswith("val/") for k in r)],
           "stopped_by_max_minutes": "max_minutes:" in (work / "gan.log").read_text(errors="replace")}
    checks["gan"] = gan
    if rows:
        shutil.copy(run / "metrics.jsonl", out / "metrics.jsonl")
    write_json(out / "checks.json", checks)
    if rc != 0 or not train_rows:
        gan["log_tail"] = tail(work / "gan.log", 8)
        raise RunError(f"GAN run failed (rc {rc}): {gan['log_tail'][-1:]}")
    say(f"GAN run: {gan['steps']} steps in {took:.0f} s ({gan['steps_per_s']:.2f} steps/s in the loop); last "
        f"mel {gan['last'].get('loss/mel', float('nan')):.4f}, disc {gan['last'].get('loss/disc', float('nan')):.4f}")

    # 5. the float16 export, through train.py's own --export
    rc, took = run_logged([args.python, "train.py", "--config", str(run / "config.yaml"), "--output-dir", str(run),
                           "--no-tensorboard", "--export", "--export-dtype", "float16"], work / "export.log", 120,
                          device_env)
    if rc != 0:
        raise RunError(f"float16 export failed (rc {rc}): {tail(work / 'export.log', 1)}")
    (out / "model").mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run / "export" / name, out / "model" / name)
    size = (out / "model" / "model.safetensors").stat().st_size
    gan["export"] = {"dtype": "float16", "bytes": size, "seconds": round(took, 1)}
    say(f"export: float16 model.safetensors {size / 1e6:.1f} MB -> {out / 'model'} ({took:.0f} s)")
    # the recipe freezes encoder, codebooks and semantic head: the new model's codes are the shipped one's
    res = work / "codes_check.json"
    res.unlink(missing_ok=True)
    rc, took = run_logged([args.python, "-c", CODES_CHECK, str(out / "model"), str(res), device], work / "codes_check.log",
                          max(30.0, t_start + args.budget_s - time.time() - 5), device_env)
    if rc == 0 and res.is_file():
        gan["codes_vs_shipped"] = json.loads(res.read_text())
        c = gan["codes_vs_shipped"]
        say(f"exported model against the shipped one on {c['files']} evaluation files: {c['codes_equal_fraction']:.4f} of "
            f"the codes equal (frozen parts), decoded audio differs by {c['decoded_rel_rms_diff']:.3f} relative RMS")
    else:
        gan["codes_vs_shipped"] = {"rc": rc, "log_tail": tail(work / "codes_check.log", 5)}
        say(f"codes check failed (rc {rc}): {tail(work / 'codes_check.log', 1)}")
    write_json(out / "checks.json", checks)
    for p in out.rglob("*"):
        if p.is_file() and p.stat().st_size > 16 * MIB:
            raise RunError(f"{p} is {p.stat().st_size / MIB:.1f} MiB, over the 16 MiB a result file may have")
    return 0


if __name__ == "__main__":
    sys.exit(main())
