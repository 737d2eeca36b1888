"""Training: ``python train.py --config X.yaml --output-dir RUN [key=value ...]`` (see docs/training.md).

A config with ``task: enhance`` trains a speech enhancer in a codec's latent space instead
(:mod:`hasrd.enhance.train`, docs/enhancement.md) on the same loop; ``task: lm`` a token LM
(:mod:`hasrd.lm.train`, docs/lm.md); ``task: star`` speech-to-audio generation
(:mod:`hasrd.star.train`, docs/star.md).
"""
from __future__ import annotations

import argparse
import sys

from ..codecs.base import STORAGE_DTYPES
from .trainer import DEFAULT_TRAIN, Trainer, TrainingError, TrainState


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a hasrd codec with Hugging Face Accelerate (1 CPU, 1 GPU or many).",
        epilog="Multi-process: accelerate launch [--cpu] [--num_processes N] train.py --config ... ",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.export_dtype != "float32" and not args.export:
        parser.error("--export-dtype needs --export")
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from ..config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    task = cfg.get("task", "codec")
    if task == "enhance":
        from ..enhance.train import EnhanceTrainer as trainer_class
    elif task == "lm":
        from ..lm.train import LMTrainer as trainer_class
    elif task == "star":
        from ..star.train import StarTrainer as trainer_class
    elif task == "codec":
        trainer_class = Trainer
    else:
        print(f"train.py: error: unknown task {task!r} (codec, enhance, lm or star)", file=sys.stderr)
        return 2
    if args.export:
        try:
            trainer_class.check_export_dtype(args.export_dtype)  # before anything is read or written
        except TrainingError as exc:
            print(f"train.py: error: {exc}", file=sys.stderr)
            return 2
    weights = cfg.get("loss_weights", {})
    # a loss with weight 0 is only logged, so its head gets no gradient: tell DDP
    unused = any(float(weights.get(k, 0)) == 0 for k in ("sem_reg", "sem_ce"))
    log_with = None
    if not args.no_tensorboard:
        try:
            import tensorboard  # noqa: F401

            log_with = "tensorboard"
        except ImportError:
            pass
    import torch

    # train.mixed_precision: no | bf16 | fp16 for the Accelerator; null leaves it to
    # `accelerate launch --mixed_precision` (ACCELERATE_MIXED_PRECISION), else float32
    precision = (cfg.get("train") or {}).get("mixed_precision")
    if precision is False:  # YAML reads a bare `no` as false
        precision = "no"
    if precision is not None and str(precision) not in ("no", "bf16", "fp16"):
        print(f"train.py: error: train.mixed_precision={precision}: use no, bf16 or fp16 (or null)", file=sys.stderr)
        return 2
    try:
        acc = Accelerator(
            # With no GPU, processes started by `accelerate launch --multi_gpu --num_processes N`
            # join one gloo process group on the CPU (accelerate's `--cpu` flag starts only one
            # process unless MPI is configured).
            cpu=not torch.cuda.is_available(),
            mixed_precision=None if precision is None else str(precision),
            log_with=log_with,
            project_dir=args.output_dir,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)],
        )
    except ValueError as exc:  # e.g. fp16 without a GPU
        print(f"train.py: error: train.mixed_precision={precision}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if log_with:
        acc.init_trackers("tb")
    if acc.mixed_precision != "no":
        acc.print(f"mixed precision: {acc.mixed_precision} autocast on {acc.device}")
    trainer = trainer_class(cfg, args.output_dir, acc)
    try:
        trainer.setup(resume=args.resume or args.export)
        if args.export:
            path = trainer.export(dtype=args.export_dtype)
            acc.print(f"exported step {trainer.state.step} to {path}")
        else:
            trainer.fit()
    except (TrainingError, ValueError, FileNotFoundError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    finally:
        acc.end_training()
    return 0


__all__ = ["DEFAULT_TRAIN", "TrainState", "Trainer", "TrainingError", "build_parser", "main"]
