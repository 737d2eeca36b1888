"""``python train.py --config X.yaml --output-dir RUN [key=value ...]`` (see docs/training.md).

The config's ``task:`` picks what trains on the one loop (:data:`hasrd.train.task.TASKS`):
``codec`` (the default), ``enhance`` (docs/enhancement.md), ``lm`` (docs/lm.md) or ``star``
(docs/star.md).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from datetime import timedelta
from pathlib import Path

from ..codecs.persist import STORAGE_DTYPES
from .config import SECTIONS, TrainConfig, TrainingError, check_keys
from .task import task_class


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a hasrd codec (or an enhancer, token LM or speech-to-audio model) with Hugging Face "
                    "Accelerate (1 CPU, 1 GPU or many).",
        epilog="Multi-process: accelerate launch [--multi_gpu] [--num_processes N] train.py --config ... ",
    )
    p.add_argument("--config", required=True, help="YAML config (codec_configs/...)")
    p.add_argument("--output-dir", required=True, help="run folder: checkpoints, logs, export/")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in --output-dir")
    p.add_argument("--export", action="store_true", help="only export the latest checkpoint with save_pretrained, then exit")
    p.add_argument("--export-dtype", choices=list(STORAGE_DTYPES), default="float32",
                   help="with --export: store the floating-point weights as this type (float16 halves the file)")
    p.add_argument("--no-tensorboard", action="store_true", help="log to metrics.jsonl only")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_steps=100 data.train=corpus/manifest.jsonl")
    return p


def may_leave_parameters_unused(cfg: dict) -> bool:
    """Whether a codec run may have trainable parameters outside its loss, which DDP must be told
    (``find_unused_parameters``): a semantic head with no teacher or a loss weight of 0 (only
    logged), a harmonic decoder whose pitch head has no f0/vuv weight, a GAN that starts late."""
    if cfg.get("task", "codec") != "codec":
        return False
    weights = {k: float(v) for k, v in (cfg.get("loss_weights") or {}).items()}
    teacher = {k: v for k, v in (cfg.get("teacher") or {}).items() if k != "context"}
    decoder = (cfg.get("model") or {}).get("decoder") or {}
    return (not teacher or any(weights.get(k, 0) == 0 for k in ("sem_reg", "sem_ce"))
            or (isinstance(decoder, dict) and decoder.get("source") == "harmonic"
                and not (weights.get("f0") and weights.get("vuv"))))


def _accelerator(cfg: dict, t: TrainConfig, output_dir: str, tensorboard: bool):
    """The Accelerator of the launch options and ``train.mixed_precision`` / ``train.dist_timeout``."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    unused = may_leave_parameters_unused(cfg)
    log_with = None
    if tensorboard:
        try:
            import tensorboard  # noqa: F401

            log_with = "tensorboard"
        except ImportError:
            pass
    try:
        acc = Accelerator(
            # With no GPU, processes started by `accelerate launch --multi_gpu --num_processes N`
            # join one gloo process group on the CPU (accelerate's `--cpu` flag starts only one
            # process unless MPI is configured).
            cpu=not torch.cuda.is_available(),
            mixed_precision=t.mixed_precision,
            log_with=log_with,
            project_dir=output_dir,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused),
                             InitProcessGroupKwargs(timeout=timedelta(seconds=t.dist_timeout))],
        )
    except ValueError as exc:  # e.g. fp16 without a GPU
        raise TrainingError(f"train.mixed_precision={t.mixed_precision}: {' '.join(str(exc).split())}") from None
    if log_with:
        acc.init_trackers("tb")
    if acc.mixed_precision != "no":
        acc.print(f"mixed precision: {acc.mixed_precision} autocast on {acc.device}")
    return acc


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.export_dtype != "float32" and not args.export:
        parser.error("--export-dtype needs --export")
    from ..config import ConfigError, load_config
    from .loop import Loop

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    try:  # what the command line alone can refuse (exit 2), before anything is read or written
        task = task_class(str(cfg.get("task", "codec")))
        if args.export:
            task.check_export_dtype(args.export_dtype)
    except TrainingError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    try:  # unknown sections and a bad train section (exit 1, as every refused run), before anything is written
        check_keys("", cfg, SECTIONS)
        t = TrainConfig.from_dict(cfg.get("train"))
    except TrainingError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    created = not Path(args.output_dir).exists()  # a refused run leaves no folder it created
    try:
        acc = _accelerator(cfg, t, args.output_dir, not args.no_tensorboard)
    except TrainingError as exc:
        _remove_if(created, args.output_dir)
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    loop = Loop(cfg, args.output_dir, acc, task, created=created)
    try:
        if args.export:
            _export(loop, args.export_dtype)
        else:
            loop.setup(resume=args.resume)
            loop.fit()
    except (TrainingError, ValueError, FileNotFoundError) as exc:
        error = exc
    else:
        return 0
    finally:
        acc.end_training()
    # refused before set-up finished: nothing of this run is worth keeping
    _remove_if(created and loop.parts is None and acc.is_main_process, args.output_dir)
    print(f"train.py: error: {error}", file=sys.stderr)
    return 1


def _remove_if(condition: bool, folder: str) -> None:
    if condition:
        shutil.rmtree(folder, ignore_errors=True)


def _export(loop, dtype: str) -> None:
    """``--export``: the latest checkpoint's weights; a run with no checkpoint is refused."""
    if loop.latest_checkpoint() is None:
        raise TrainingError(f"--export: {loop.out} has no complete checkpoint to export")
    loop.setup(resume=True)
    path = loop.export(dtype=dtype)
    loop.acc.print(f"exported step {loop.state.step} to {path}")
