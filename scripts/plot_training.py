#!/usr/bin/env python3
"""Plot a run's training curves from its ``metrics.jsonl`` (loss terms, validation, codebook use).

    python scripts/plot_training.py RUN/metrics.jsonl -o docs/figures/default_training.png

Writes one PNG with three panels: the training loss terms (mel, semantic regression and unit
cross-entropy, VQ), the validation mel distance and PESQ-wb, and per-codebook usage (normalised
perplexity). Lines that a run did not log are left out. A run without those codec terms (a
token LM or an enhancer, ``task: lm`` / ``task: enhance``) gets two generic panels instead: every
``loss/*`` term, and every ``val/*`` figure.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise SystemExit(f"plot_training.py: {path}:{n}: not a JSON line") from None
    return rows


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Plot training curves from metrics.jsonl.")
    p.add_argument("metrics", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    if not args.metrics.is_file():
        print(f"plot_training.py: {args.metrics}: no such file", file=sys.stderr)
        return 1
    rows = read(args.metrics)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codec_keys = ("loss/mel", "loss/sem_reg", "loss/vq", "loss/sem_ce", "val/mel")
    if not any(k in r for r in rows for k in codec_keys):
        return generic(rows, args, plt)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for key, label in [("loss/mel", "mel L1 (log10)"), ("loss/env", "envelope L1 (log power)"),
                       ("loss/sem_reg", "semantic regression (1-cos)"),
                       ("loss/vq", "VQ commitment"), ("loss/adv", "adversarial"), ("loss/feat", "feature matching")]:
        x, y = series(rows, key)
        if x:
            ax.plot(x, y, label=label, lw=1)
    x, y = series(rows, "loss/sem_ce")
    if x:
        ax.plot(x, [v / 4 for v in y], label="unit cross-entropy / 4", lw=1)
    ax.set_xlabel("step"); ax.set_title("training losses"); ax.legend(fontsize=8); ax.grid(alpha=0.3)

    ax = axes[1]
    x, y = series(rows, "val/mel")
    if x:
        ax.plot(x, y, "o-", label="val mel distance", color="C0")
    ax.set_xlabel("step"); ax.set_ylabel("mel distance"); ax.grid(alpha=0.3)
    x, y = series(rows, "val/pesq_wb")
    if x:
        ax2 = ax.twinx()
        ax2.plot(x, y, "s-", label="val PESQ-wb", color="C3")
        ax2.set_ylabel("PESQ-wb", color="C3")
    ax.set_title("validation (held-out sentences, all codebooks)")

    ax = axes[2]
    keys = sorted({k for r in rows for k in r if k.startswith("codebook/") and k.endswith("/perplexity")})
    for key in keys:
        x, y = series(rows, key)
        ax.plot(x, y, label=key.split("/")[1], lw=1)
    ax.set_xlabel("step"); ax.set_title("codebook perplexity / K (batch)"); ax.legend(fontsize=8); ax.grid(alpha=0.3)
    fig.suptitle(args.title or str(args.metrics))
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90)
    print(f"wrote {args.output}")
    return 0


def generic(rows: list[dict], args, plt) -> int:
    """Two panels: the logged ``loss/*`` terms and the ``val/*`` figures, whatever they are; a
    token LM's input-use figures (``val/acc_*``) get a third panel of their own."""
    acc = any("val/acc_shuf_q1" in r for r in rows)
    fig, axes = plt.subplots(1, 3 if acc else 2, figsize=(18 if acc else 12, 4.2))
    if acc:
        input_use(rows, axes[2])
    for ax, prefix, style, title in [(axes[0], "loss/", "-", "training losses"), (axes[1], "val/", "o-", "validation")]:
        keys = sorted({k for r in rows for k in r if k.startswith(prefix) and not k.startswith("val/acc")})
        for key in keys:
            x, y = series(rows, key)
            ax.plot(x, y, style, label=key[len(prefix):], lw=1, ms=3)
        ax.set_xlabel("step"); ax.set_title(title); ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
    fig.suptitle(args.title or str(args.metrics))
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90)
    print(f"wrote {args.output}")
    return 0


def input_use(rows: list[dict], ax) -> None:
    """Per codebook, teacher-forced accuracy with the true input (solid) and with inputs shuffled
    across the batch (dashed), and the two model-free baselines of codebook 1 (dotted)."""
    ks = sorted(int(k[len("val/acc_q"):]) for k in {k for r in rows for k in r} if k.startswith("val/acc_q"))
    for k in ks:
        for key, style in ((f"val/acc_q{k}", "o-"), (f"val/acc_shuf_q{k}", "x--")):
            x, y = series(rows, key)
            ax.plot(x, y, style, color=f"C{k - 1}", lw=1, ms=3,
                    label=f"codebook {k}" + (" (shuffled input)" if "shuf" in key else ""))
    for key, label, color in (("val/acc_copy_q1", "copy the input's codes (cb 1)", "k"),
                              ("val/acc_prev_q1", "repeat the previous frame (cb 1)", "0.5")):
        x, y = series(rows, key)
        if x:
            ax.plot(x, y, ":", color=color, label=label)
    ax.set_xlabel("step"); ax.set_ylabel("token accuracy"); ax.grid(alpha=0.3)
    ax.set_title("does it use its input? (held-out, teacher-forced)"); ax.legend(fontsize=7)


if __name__ == "__main__":
    raise SystemExit(main())
