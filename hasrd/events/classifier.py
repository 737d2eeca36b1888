"""The classifier of the event judge: :class:`EventJudge`, a multinomial logistic regression on
:mod:`hasrd.events.embedding` vectors (specified in :mod:`hasrd.events.judge`'s docstring).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .embedding import EMBED_DIM, EMBEDDING, SAMPLE_RATE, embed_many, embed_rows, read_manifest


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
        return cls.fit_embeddings(embed_rows(rows, progress, "embed train"), [r["class"] for r in rows],
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
