"""The fixed judge of generated sound events: an embedding, a classifier and a Fréchet distance.

``python -m hasrd.events.judge --events DIR --out DIR [--min-train N] [--seed K] [--force]
[--no-progress]``

- :func:`embed`: one vector of :data:`EMBED_DIM` numbers per clip, computed from the audio
  alone (no download, no training, deterministic). The clip is downmixed, resampled to 16 kHz and
  peak-normalised to 0.5 (the level of the data set's clips), so the judge ignores the gain. Its
  power mel spectrogram (:data:`N_FFT`-point Hann STFT, hop :data:`HOP` = 16 ms, centred with
  zero padding, :data:`N_MELS` = 64 Slaney mel bands over 0-8 kHz) is taken in dB
  (``10 log10(max(mel, 1e-10))``, floored at -100 dB), and its deltas (librosa, width 9,
  ``mode="nearest"``) in dB per frame. The vector is, in this order: the mean over frames of the
  64 log-mel bands, their standard deviation, the mean and the standard deviation of the 64
  deltas, then the mean and standard deviation of the spectral flatness in dB
  (``10 log10(max(flatness, 1e-10))``, from the same power STFT) and of the spectral centroid
  in kHz: 64 * 4 + 4 = 260 numbers (float64).
- :class:`EventJudge`: a multinomial logistic regression on standardised embeddings of the
  train split, restricted to the classes with at least ``min_train`` training clips (the
  synthesised ones in ``data/events``). scikit-learn's ``LogisticRegression`` (lbfgs, C = 1) when
  scikit-learn is installed, else the same model fitted with scipy's L-BFGS. Saved as
  ``judge.json`` and ``judge.npz`` (scaler and weights; no pickle); predictions come from the
  stored numbers, so a loaded judge predicts exactly what the fitted one did.
- :func:`frechet_distance`: the Fréchet distance between two sets of embeddings, each taken as a
  Gaussian (mean and covariance).
- :func:`score_generated`: the judge's accuracy on generated clips of each asked-for class and
  their Fréchet distance to the real held-out clips of the class.

The command fits the judge on ``DIR/manifest_train.jsonl``, judges it on
``DIR/manifest_eval.jsonl`` and writes to ``--out``: ``judge.json``, ``judge.npz``,
``report.json``, ``report.md`` (also printed) and ``confusion.png``. The folder is built under a
temporary name and renamed at the end; an error prints one ``judge: error:`` line on stderr,
exits 1 and leaves no folder.

The embedding, the manifests and the Fréchet distance are :mod:`hasrd.events.embedding`, the
classifier :mod:`hasrd.events.classifier`; their names are importable from here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..io.atomic import temp_dir
from .classifier import EventJudge
from .embedding import (
    DELTA_WIDTH,
    EMBED_DIM,
    EMBEDDING,
    HOP,
    N_FFT,
    N_MELS,
    PEAK,
    SAMPLE_RATE,
    embed,
    embed_many,
    embed_rows,
    frechet_distance,
    read_manifest,
)

__all__ = [
    "score_generated", "build_parser", "run", "main",
    # the embedding (hasrd.events.embedding) and the classifier (hasrd.events.classifier)
    "SAMPLE_RATE", "N_FFT", "HOP", "N_MELS", "DELTA_WIDTH", "PEAK", "EMBED_DIM", "EMBEDDING", "embed", "embed_many",
    "embed_rows", "read_manifest", "frechet_distance", "EventJudge",
]

#: the name :func:`embed_rows` had when it was defined here
_embed_rows = embed_rows


# ---- judging generated clips --------------------------------------------------------------------


def score_generated(judge: EventJudge, clips_by_class: dict[str, list[np.ndarray]], sr: int,
                    reference_manifest: str | Path, progress: bool = False) -> dict:
    """Judge generated clips: ``clips_by_class`` maps the class asked for to the clips made for it.

    For each class: ``n``, ``accuracy`` (the share of its clips the judge labels as the class
    asked for), ``predicted`` (how many clips got each label), ``fd`` (the Fréchet distance of
    their embeddings to those of the class's real eval clips in ``reference_manifest``; None when
    either set has fewer than 2 clips), and for comparison ``real_accuracy`` (the judge on those
    real eval clips) and ``real_n``. Overall: ``accuracy`` (pooled over every clip),
    ``mean_accuracy`` and ``mean_fd`` (means over the classes; ``mean_fd`` over those with an
    ``fd``), ``real_mean_accuracy``, and ``chance`` = 1 / the judge's classes. To compare with
    random-class generation, score clips generated for random classes under the class they
    were asked for, the same way. Raises ValueError for a class the judge does not know or an
    empty class.
    """
    unknown = sorted(set(clips_by_class) - set(judge.classes))
    if unknown:
        raise ValueError(f"class(es) {', '.join(unknown)} unknown to the judge (it knows {', '.join(judge.classes)})")
    reference = read_manifest(reference_manifest, split="eval")
    per: dict[str, dict] = {}
    hits = total = 0
    for name in sorted(clips_by_class):
        clips = list(clips_by_class[name])
        if not clips:
            raise ValueError(f"class {name}: no clips")
        emb = embed_many(clips, sr, progress, desc=f"embed {name}")
        labels = judge.predict_embeddings(emb)
        real = embed_rows([r for r in reference if r["class"] == name])
        real_labels = judge.predict_embeddings(real) if len(real) else []
        ok = sum(lab == name for lab in labels)
        hits, total = hits + ok, total + len(labels)
        predicted: dict[str, int] = {}
        for lab in labels:
            predicted[lab] = predicted.get(lab, 0) + 1
        per[name] = {"n": len(labels), "accuracy": ok / len(labels),
                     "predicted": dict(sorted(predicted.items())),
                     "fd": frechet_distance(emb, real) if len(emb) >= 2 and len(real) >= 2 else None,
                     "real_n": len(real),
                     "real_accuracy": (sum(lab == name for lab in real_labels) / len(real)) if len(real) else None}
    fds = [v["fd"] for v in per.values() if v["fd"] is not None]
    real_acc = [v["real_accuracy"] for v in per.values() if v["real_accuracy"] is not None]
    return {"classes": per, "accuracy": hits / total if total else None,
            "mean_accuracy": float(np.mean([v["accuracy"] for v in per.values()])) if per else None,
            "mean_fd": float(np.mean(fds)) if fds else None,
            "real_mean_accuracy": float(np.mean(real_acc)) if real_acc else None,
            "chance": 1.0 / len(judge.classes)}


# ---- the command ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hasrd.events.judge",
                                description="Fit the fixed sound-event judge on an events folder and report how well it judges the held-out clips.")
    p.add_argument("--events", required=True, metavar="DIR", help="an events folder (python -m hasrd.events.recipe)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --force)")
    p.add_argument("--min-train", type=int, default=20, metavar="N",
                   help="judge only the classes with at least N training clips (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the classifier (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _confusion_png(path: Path, classes: list[str], matrix: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k), dpi=100)
    ax.imshow(matrix, cmap="Blues", vmin=0)
    top = matrix.max() if matrix.size else 0
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > top / 2 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (held-out clips)")
    ax.set_title("event judge: held-out confusion")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _num(value, fmt: str = ".1f") -> str:
    return "–" if value is None else format(value, fmt)


def _report_md(rep: dict) -> str:
    classes = rep["classes"]
    lines = ["# Event judge", "",
             f"Events `{rep['events']}`; embedding `{rep['embedding']}` ({rep['embed_dim']} numbers); "
             f"classifier {rep['backend']} logistic regression on the {len(classes)} classes with at least "
             f"{rep['min_train']} training clips ({rep['train_clips']} training clips; seed {rep['seed']}).", "",
             f"Held-out accuracy: **{rep['accuracy']:.3f}** over {rep['eval_clips']} clips "
             f"(mean over classes {rep['mean_accuracy']:.3f}; chance {1 / len(classes):.3f}).", "",
             f"Fréchet distance, train vs eval clips of the same class (the real-vs-real floor): mean "
             f"**{_num(rep['fd_same_mean'])}**; eval clips of two different classes (the scale): mean "
             f"**{_num(rep['fd_between_mean'])}** (min {_num(rep['fd_between_min'])}, over {rep['fd_between_pairs']} pairs).", "",
             "| class | train | eval | accuracy | FD train-eval | FD to the nearest other class (eval) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in classes:
        v = rep["per_class"][c]
        nearest = f" (`{v['nearest']}`)" if v["nearest"] else ""
        lines.append(f"| `{c}` | {v['train']} | {v['eval']} | {_num(v['accuracy'], '.3f')} | "
                     f"{_num(v['fd_train_eval'])} | {_num(v['fd_nearest'])}{nearest} |")
    lines += ["", "Confusion (rows: true class of the held-out clips, columns: predicted):", "",
              "| | " + " | ".join(f"`{c}`" for c in classes) + " |", "| --- |" + " --- |" * len(classes)]
    for c, row in zip(classes, rep["confusion"]):
        lines.append(f"| `{c}` | " + " | ".join(str(n) if n else "·" for n in row) + " |")
    if rep["left_out"]:
        lines += ["", f"Left out (fewer than {rep['min_train']} training clips): "
                  + ", ".join(f"`{c}` ({n})" for c, n in rep["left_out"].items()) + "."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import time

    events, out = Path(args.events), Path(args.out)
    if args.min_train < 1:
        raise ValueError(f"--min-train {args.min_train}: must be at least 1")
    if not events.is_dir():
        raise ValueError(f"{events}: no such events folder")
    for name in ("manifest_train.jsonl", "manifest_eval.jsonl"):
        if not (events / name).is_file():
            raise ValueError(f"{events}: no {name} (make the folder with python -m hasrd.events.recipe)")
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    start = time.perf_counter()
    train = read_manifest(events / "manifest_train.jsonl", split="train")
    evals = read_manifest(events / "manifest_eval.jsonl", split="eval")
    x_train = embed_rows(train, args.progress, "embed train")
    x_eval = embed_rows(evals, args.progress, "embed eval")
    judge = EventJudge.fit_embeddings(x_train, [r["class"] for r in train], args.min_train, args.seed)
    classes = judge.classes
    y_train = np.array([r["class"] for r in train])
    y_eval = np.array([r["class"] for r in evals])
    keep = np.isin(y_eval, classes)
    if not keep.any():
        raise ValueError(f"{events}: no held-out clip of the judged classes {', '.join(classes)}")
    pred = np.array(judge.predict_embeddings(x_eval[keep]))
    truth = y_eval[keep]
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), int)
    for t, p in zip(truth, pred):
        confusion[index[t], index[p]] += 1
    eval_sets = {c: x_eval[y_eval == c] for c in classes}
    between = np.full((len(classes), len(classes)), np.nan)
    for i, a in enumerate(classes):
        for j in range(i + 1, len(classes)):
            b = classes[j]
            if len(eval_sets[a]) >= 2 and len(eval_sets[b]) >= 2:
                between[i, j] = between[j, i] = frechet_distance(eval_sets[a], eval_sets[b])
    per = {}
    for i, c in enumerate(classes):
        n = int((truth == c).sum())
        others = {classes[j]: between[i, j] for j in range(len(classes)) if j != i and np.isfinite(between[i, j])}
        nearest = min(others, key=others.get) if others else None
        ev = eval_sets[c]
        per[c] = {"train": int((y_train == c).sum()), "eval": n,
                  "accuracy": float(confusion[i, i] / n) if n else None,
                  "fd_train_eval": frechet_distance(x_train[y_train == c], ev) if len(ev) >= 2 else None,
                  "nearest": nearest, "fd_nearest": float(others[nearest]) if nearest else None}
    pairs = between[np.triu_indices(len(classes), 1)]
    pairs = pairs[np.isfinite(pairs)]
    same = [v["fd_train_eval"] for v in per.values() if v["fd_train_eval"] is not None]
    rep = {"events": str(events), "embedding": EMBEDDING, "embed_dim": EMBED_DIM, "backend": judge.info["backend"],
           "backend_version": judge.info["backend_version"], "min_train": args.min_train, "seed": args.seed,
           "classes": classes, "train_clips": int(np.isin(y_train, classes).sum()), "eval_clips": int(keep.sum()),
           "accuracy": float((pred == truth).mean()),
           "mean_accuracy": float(np.mean([v["accuracy"] for v in per.values() if v["accuracy"] is not None])),
           "per_class": per, "confusion": confusion.tolist(),
           "fd_same_mean": float(np.mean(same)) if same else None,
           "fd_between_mean": float(pairs.mean()) if pairs.size else None,
           "fd_between_min": float(pairs.min()) if pairs.size else None,
           "fd_between_pairs": int(pairs.size),
           "fd_between": {a: {b: (None if not np.isfinite(between[i, j]) else float(between[i, j]))
                              for j, b in enumerate(classes) if j != i} for i, a in enumerate(classes)},
           "left_out": judge.info["left_out"]}
    md = _report_md(rep)
    rep["seconds"] = round(time.perf_counter() - start, 1)
    with temp_dir(out) as tmp:
        judge.save(tmp)
        (tmp / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
        (tmp / "report.md").write_text(md)
        _confusion_png(tmp / "confusion.png", classes, confusion)
    sys.stdout.write(md)
    print(f"wrote the judge and its report to {out} ({rep['seconds']} s)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        print(f"judge: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
