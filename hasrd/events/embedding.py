"""The fixed embedding of the event judge (:mod:`hasrd.events.judge`), the events manifests it reads
and the Fréchet distance between two sets of embeddings.

:func:`embed` and :func:`frechet_distance` are specified in :mod:`hasrd.events.judge`'s docstring;
the classifier on these embeddings is :mod:`hasrd.events.classifier`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

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


def embed_rows(rows: Sequence[dict], progress: bool = False, desc: str = "embed") -> np.ndarray:
    """:func:`embed` of the clips of manifest rows (:func:`read_manifest`), loaded at :data:`SAMPLE_RATE`."""
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
