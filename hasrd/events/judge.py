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
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..io.atomic import temp_dir

#: the sample rate every clip is resampled to before it is embedded
SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
N_MELS = 64
DELTA_WIDTH = 9
#: the level a clip is peak-normalised to before it is embedded (that of the data set's clips)
PEAK = 0.5
#: the length of an embedding
EMBED_DIM = 4 * N_MELS + 4
#: the name of the embedding, stored with a judge so that a judge of another one is refused
EMBEDDING = f"logmel{N_MELS}-stats-v1"
_FLOOR_DB = -100.0
_SILENT = 1e-8


# ---- the embedding ------------------------------------------------------------------------------


def embed(audio: np.ndarray, sr: int) -> np.ndarray:
    """The fixed embedding of one clip (see the module's docstring): float64 ``[EMBED_DIM]``.

    ``audio`` is ``[samples]`` or ``[channels, samples]`` (channels are averaged) at ``sr``.
    A silent clip is embedded as it is (every band at the -100 dB floor). Raises ValueError for
    an empty clip or NaN/inf samples.
    """
    import librosa

    x = np.asarray(audio, np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1:
        raise ValueError(f"audio of shape {np.shape(audio)}: expected [samples] or [channels, samples]")
    if x.size == 0:
        raise ValueError("an empty clip cannot be embedded")
    if not np.isfinite(x).all():
        raise ValueError("the clip has NaN or infinite samples")
    if int(sr) != SAMPLE_RATE:
        x = librosa.resample(x, orig_sr=int(sr), target_sr=SAMPLE_RATE, res_type="soxr_hq")
    top = float(np.abs(x).max()) if x.size else 0.0
    if top > _SILENT:
        x = x * (PEAK / top)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    spec = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=HOP, window="hann", center=True, pad_mode="constant")) ** 2
    mel = librosa.feature.melspectrogram(S=spec, sr=SAMPLE_RATE, n_mels=N_MELS, fmin=0.0, fmax=SAMPLE_RATE / 2)
    logmel = np.maximum(10 * np.log10(np.maximum(mel, 1e-10)), _FLOOR_DB)
    delta = librosa.feature.delta(logmel, width=DELTA_WIDTH, mode="nearest")
    flat = librosa.feature.spectral_flatness(S=spec, power=1.0)[0]
    flat_db = 10 * np.log10(np.maximum(flat, 1e-10))
    centroid = librosa.feature.spectral_centroid(S=spec, sr=SAMPLE_RATE, n_fft=N_FFT)[0] / 1000.0
    out = np.concatenate([logmel.mean(1), logmel.std(1), delta.mean(1), delta.std(1),
                          [flat_db.mean(), flat_db.std(), centroid.mean(), centroid.std()]])
    return np.nan_to_num(out.astype(np.float64), nan=0.0)


def embed_many(clips: Iterable[np.ndarray], sr: int, progress: bool = False, desc: str = "embed") -> np.ndarray:
    """:func:`embed` of every clip: float64 ``[n, EMBED_DIM]`` (a tqdm bar on stderr if ``progress``)."""
    from tqdm import tqdm

    clips = list(clips)
    rows = [embed(c, sr) for c in tqdm(clips, desc=desc, unit="clip", disable=not progress, file=sys.stderr)]
    return np.stack(rows) if rows else np.zeros((0, EMBED_DIM))


# ---- manifests ----------------------------------------------------------------------------------


def read_manifest(manifest: str | Path, split: str | None = None) -> list[dict]:
    """The rows of an events manifest, each with ``"file"``: the clip's absolute path.

    ``manifest`` is a ``.jsonl`` file (paths relative to its folder) or an events folder (its
    ``manifest.jsonl``). ``split`` keeps only the rows of that split.
    """
    from ..io.manifest import read_rows

    path = Path(manifest)
    if path.is_dir():
        path = path / "manifest.jsonl"
    try:
        rows = read_rows(path, ("path", "class"), (), "a manifest of python -m hasrd.events.recipe", allow_empty=True)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    for row in rows:
        row["file"] = str(path.parent / row["path"])
        row["class"] = str(row["class"])
    return [r for r in rows if split is None or r.get("split") == split]


def _embed_rows(rows: Sequence[dict], progress: bool = False, desc: str = "embed") -> np.ndarray:
    from tqdm import tqdm

    from ..io.audio import load_audio

    out = []
    for row in tqdm(rows, desc=desc, unit="clip", disable=not progress, file=sys.stderr):
        audio, sr = load_audio(row["file"], SAMPLE_RATE, mono=True)
        out.append(embed(audio[0], sr))
    return np.stack(out) if out else np.zeros((0, EMBED_DIM))


# ---- the Fréchet distance -----------------------------------------------------------------------


def frechet_distance(emb_a: np.ndarray, emb_b: np.ndarray, eps: float = 1e-6) -> float:
    """The Fréchet distance between two sets of embeddings (``[n, d]`` each), each taken as a
    Gaussian: ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 sqrtm(C_a C_b))``.

    The covariances (unbiased, ``n - 1``) get ``eps`` times the identity added, so a set with
    fewer vectors than dimensions still has a full-rank covariance; the matrix square root is
    ``scipy.linalg.sqrtm`` and its real part is kept (with ``eps`` raised tenfold, up to 1e-2,
    while the root is not finite). Symmetric; 0 for a set against itself (up to rounding, and
    never below 0). Raises ValueError for a set of fewer than 2 vectors or of other dimensions.
    """
    from scipy import linalg

    a, b = np.asarray(emb_a, np.float64), np.asarray(emb_b, np.float64)
    for name, x in (("first", a), ("second", b)):
        if x.ndim != 2:
            raise ValueError(f"the {name} set has shape {x.shape}: expected [n, d]")
        if x.shape[0] < 2:
            raise ValueError(f"the {name} set has {x.shape[0]} vector(s): a Fréchet distance needs at least 2")
        if not np.isfinite(x).all():
            raise ValueError(f"the {name} set has NaN or infinite values")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the sets have {a.shape[1]} and {b.shape[1]} dimensions")
    diff = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ca, cb = np.atleast_2d(ca), np.atleast_2d(cb)
    eye = np.eye(a.shape[1])
    while True:
        ra, rb = ca + eps * eye, cb + eps * eye
        root = linalg.sqrtm(ra @ rb)
        if np.isfinite(root).all() or eps >= 1e-2:
            break
        eps *= 10
    tr = float(np.trace(ra) + np.trace(rb) - 2 * np.trace(np.real(root)))
    # the product's root is computed in either order; average the two so the result is symmetric
    root_ba = linalg.sqrtm(rb @ ra)
    tr_ba = float(np.trace(ra) + np.trace(rb) - 2 * np.trace(np.real(root_ba)))
    return max(0.0, float(diff @ diff) + 0.5 * (tr + tr_ba))


# ---- the classifier -----------------------------------------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_numpy(z: np.ndarray, y: np.ndarray, k: int, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (L2 ``1 / (2C) |W|^2``, summed log loss; the objective of
    scikit-learn's lbfgs), fitted with scipy's L-BFGS from zeros: ``(coef [k, d], intercept [k])``."""
    from scipy.optimize import minimize

    n, d = z.shape
    onehot = np.eye(k)[y]

    def loss(theta):
        w, b = theta[: k * d].reshape(k, d), theta[k * d:]
        logits = z @ w.T + b
        m = logits.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(1))
        value = float(lse.sum() - (logits * onehot).sum() + 0.5 / c * (w * w).sum())
        g = _softmax(logits) - onehot
        return value, np.concatenate([(g.T @ z + w / c).ravel(), g.sum(0)])

    res = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B", options={"maxiter": 5000})
    return res.x[: k * d].reshape(k, d), res.x[k * d:]


def _backend_default() -> str:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return "numpy"
    return "sklearn"


class EventJudge:
    """A sound-event classifier on :func:`embed` vectors (see the module's docstring).

    ``classes`` are the labels it can give, sorted; ``mean``/``scale`` standardise an embedding,
    ``coef`` ``[len(classes), EMBED_DIM]`` and ``intercept`` give the logits. ``info`` records
    how it was fitted (backend, ``min_train``, seed, training clips per class, classes left out).
    """

    def __init__(self, classes: Sequence[str], mean: np.ndarray, scale: np.ndarray,
                 coef: np.ndarray, intercept: np.ndarray, info: dict | None = None):
        self.classes = [str(c) for c in classes]
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.coef = np.asarray(coef, np.float64)
        self.intercept = np.asarray(intercept, np.float64)
        self.info = dict(info or {})
        k = len(self.classes)
        if self.coef.shape != (k, EMBED_DIM) or self.intercept.shape != (k,) or self.mean.shape != (EMBED_DIM,) \
                or self.scale.shape != (EMBED_DIM,):
            raise ValueError("the judge's weights do not match its classes and the embedding")

    # -- fitting

    @classmethod
    def fit(cls, manifest: str | Path, min_train: int = 20, seed: int = 0, backend: str | None = None,
            progress: bool = False) -> "EventJudge":
        """Fit on the train split of ``manifest`` (an events folder or a ``.jsonl`` file; see
        :func:`read_manifest`), on the classes with at least ``min_train`` training clips."""
        rows = read_manifest(manifest, split="train")
        return cls.fit_embeddings(_embed_rows(rows, progress, "embed train"), [r["class"] for r in rows],
                                  min_train=min_train, seed=seed, backend=backend)

    @classmethod
    def fit_embeddings(cls, emb: np.ndarray, labels: Sequence[str], min_train: int = 20, seed: int = 0,
                       backend: str | None = None) -> "EventJudge":
        """Fit on given embeddings and their labels (classes under ``min_train`` clips left out)."""
        emb = np.asarray(emb, np.float64)
        labels = [str(c) for c in labels]
        if min_train < 1:
            raise ValueError(f"min_train {min_train}: must be at least 1")
        if emb.ndim != 2 or emb.shape[1] != EMBED_DIM or emb.shape[0] != len(labels):
            raise ValueError(f"embeddings of shape {emb.shape} for {len(labels)} labels")
        counts: dict[str, int] = {}
        for c in labels:
            counts[c] = counts.get(c, 0) + 1
        classes = sorted(c for c, n in counts.items() if n >= min_train)
        if len(classes) < 2:
            raise ValueError(f"{len(classes)} class(es) have at least {min_train} training clips: a classifier needs 2")
        keep = np.array([c in classes for c in labels])
        x = emb[keep]
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[c] for c, k in zip(labels, keep) if k])
        mean = x.mean(0)
        scale = x.std(0)
        scale[scale < 1e-12] = 1.0  # a constant feature (as StandardScaler does)
        z = (x - mean) / scale
        backend = backend or _backend_default()
        if backend == "sklearn":
            import sklearn
            from sklearn.linear_model import LogisticRegression
            from sklearn.preprocessing import StandardScaler

            scaler = StandardScaler().fit(x)
            mean, scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
            model = LogisticRegression(C=1.0, max_iter=5000, random_state=seed).fit(scaler.transform(x), y)
            coef, intercept = np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)
            if len(classes) == 2:  # one logit for class 1; softmax([0, s]) = sigmoid(s)
                coef = np.concatenate([np.zeros_like(coef), coef])
                intercept = np.concatenate([[0.0], intercept])
            version = sklearn.__version__
        elif backend == "numpy":
            coef, intercept = _fit_numpy(z, y, len(classes))
            version = None
        else:
            raise ValueError(f"backend {backend!r}: expected 'sklearn' or 'numpy'")
        info = {"embedding": EMBEDDING, "backend": backend, "backend_version": version, "min_train": min_train,
                "seed": seed, "train_clips": {c: counts[c] for c in classes},
                "left_out": {c: n for c, n in sorted(counts.items()) if c not in classes}}
        return cls(classes, mean, scale, coef, intercept, info)

    # -- predicting

    def proba_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """The class probabilities ``[n, len(classes)]`` of given embeddings."""
        emb = np.atleast_2d(np.asarray(emb, np.float64))
        return _softmax(((emb - self.mean) / self.scale) @ self.coef.T + self.intercept)

    def predict_embeddings(self, emb: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.proba_embeddings(emb).argmax(1)]

    def embed_many(self, clips: Iterable[np.ndarray], sr: int, progress: bool = False) -> np.ndarray:
        """:func:`embed_many`: the embedding of every clip, ``[n, EMBED_DIM]``."""
        return embed_many(clips, sr, progress)

    def proba(self, clips: Iterable[np.ndarray], sr: int, progress: bool = False) -> np.ndarray:
        """The class probabilities ``[n, len(classes)]`` of clips at ``sr`` (columns in ``classes`` order)."""
        return self.proba_embeddings(self.embed_many(clips, sr, progress))

    def predict(self, clips: Iterable[np.ndarray], sr: int, progress: bool = False) -> list[str]:
        """The most probable class of each clip at ``sr``."""
        return self.predict_embeddings(self.embed_many(clips, sr, progress))

    # -- files

    def save(self, folder: str | Path) -> None:
        """Write ``folder/judge.json`` (classes, info) and ``folder/judge.npz`` (mean, scale,
        coef, intercept); the folder is created if needed."""
        from ..io.atomic import temp_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with temp_path(folder / "judge.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept)
        meta = {"format": "hasrd-event-judge", "version": 1, "embedding": EMBEDDING, "embed_dim": EMBED_DIM,
                "sample_rate": SAMPLE_RATE, "classes": self.classes, "info": self.info}
        with temp_path(folder / "judge.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "EventJudge":
        """A judge written by :meth:`save`. Raises ValueError for a missing or foreign folder."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "judge.json").read_text())
            with np.load(folder / "judge.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("mean", "scale", "coef", "intercept")}
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ValueError(f"{folder}: not a judge ({exc})") from None
        if meta.get("format") != "hasrd-event-judge" or meta.get("embedding") != EMBEDDING:
            raise ValueError(f"{folder}: a judge of embedding {meta.get('embedding')!r}, this one is {EMBEDDING!r}")
        return cls(meta["classes"], info=meta.get("info"), **arrays)


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
        real = _embed_rows([r for r in reference if r["class"] == name])
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
    x_train = _embed_rows(train, args.progress, "embed train")
    x_eval = _embed_rows(evals, args.progress, "embed eval")
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
