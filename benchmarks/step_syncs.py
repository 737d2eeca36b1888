"""Count the device-to-host syncs of one training step (``Tensor.__float__``, ``item``,
``__bool__``, ``__int__``, ``tolist`` called inside the codec task's step), by where they happen.

Each is a pipeline stall on a GPU; logging keeps its figures as tensors until a logged step. Runs
the tiny codec config with the GAN on for a few steps on the CPU:

    python benchmarks/step_syncs.py [--steps 5]

torch's own AdamW reads its step counters with ``item`` on the CPU (its single-tensor path); those
are listed apart, since a GPU run takes the fused/foreach path that does not.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COUNTS: collections.Counter = collections.Counter()
ACTIVE = [False]


def _counted(name: str):
    original = getattr(torch.Tensor, name)

    def wrapper(self, *args, **kwargs):
        if ACTIVE[0]:
            frame = traceback.extract_stack(limit=4)[-2]
            COUNTS[f"{frame.filename.split('site-packages/')[-1].replace(str(ROOT) + '/', '')}:{frame.lineno}"] += 1
        return original(self, *args, **kwargs)

    setattr(torch.Tensor, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    for name in ("__float__", "item", "__bool__", "__int__", "tolist"):
        _counted(name)
    import hasrd.train.codec_task as codec_task
    from hasrd.train import main as train_main

    step = codec_task.CodecTask.step

    def counted_step(self, batch):
        ACTIVE[0] = True
        try:
            return step(self, batch)
        finally:
            ACTIVE[0] = False

    codec_task.CodecTask.step = counted_step
    tmp = Path(tempfile.mkdtemp())
    corpus = tmp / "corpus"
    corpus.mkdir()
    t = np.arange(16000) / 16000
    for i in range(4):
        sf.write(corpus / f"u{i}.wav", (0.15 * np.sin(2 * np.pi * (120 + 10 * i) * t) * (1 + np.sin(6 * np.pi * t))).astype("float32"), 16000)
    rc = train_main(["--config", str(ROOT / "codec_configs/debug/hasrd_tiny.yaml"), "--output-dir", str(tmp / "run"),
                     "--no-tensorboard", f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200",
                     f"train.max_steps={args.steps}", "train.log_every=1000", "loss_weights.adv=1",
                     "loss_weights.feat=1", "train.disc_start=0"])
    optimizer = sum(v for k, v in COUNTS.items() if k.startswith("torch/optim/"))
    rest = sum(COUNTS.values()) - optimizer
    print(f"host syncs per step: {rest / args.steps:g} on the step path, {optimizer / args.steps:g} in torch's "
          f"CPU AdamW (step counters)")
    for where, n in COUNTS.most_common():
        if not where.startswith("torch/optim/"):
            print(f"  {n / args.steps:g}  {where}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
