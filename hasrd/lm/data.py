"""The codec features of an LM recipe (:mod:`hasrd.lm.recipe`), computed once and cached, and the
training crops and batches made from them.

Per manifest row: the latent before quantization (:class:`hasrd.codecs.CodecView`) of ``input``
(the condition) and of ``ref``; per *example*: all codebooks' codes of its target. A row is one
example, an ``ss`` row two (``ss1`` -> ``target``, ``ss2`` -> ``target2``). The input and its
targets are encoded at the input's level gain (:func:`hasrd.enhance.features.level_gain`: the
level the codec was trained around), the ref at its own. Everything sits in one safetensors file
next to the manifest, ``lm-features-v2-<codec fingerprint>-<manifest hash>.safetensors``.

Every example's target has as many frames as its condition. A ``vc`` target (another recording of
the source's sentence, in the ref's voice, coded at its own level gain) is aligned to the source by
dynamic time warping on content features (:func:`dtw_path` on :func:`content_dims` of the latent)
and stored re-indexed to the source's frames. The limitation: the LM learns vc on the source's
timing, so a converted voice keeps the source's rhythm and speaking rate (only the voice changes).
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..enhance.features import level_gain
from .tasks import SS_SLOTS, text_embedding

ROLES = ("input", "target", "target2", "ref", "ref2")


@dataclass
class Example:
    task: str  # the LM's task token: se, tse, ss1, ss2, vc, lass
    row: int  # manifest row (condition and ref)
    slot: int  # index of its target in the codes table
    query: str | None


def read_rows(manifest: str | Path) -> list[dict]:
    """The rows of a recipe manifest, with the audio paths resolved against its folder."""
    from ..io.manifest import read_rows as read_jsonl

    rows = read_jsonl(manifest, ("task", "input", "target"), ROLES, "a manifest of python -m hasrd.lm.recipe")
    for lineno, row in enumerate(rows, 1):
        if not isinstance(row["task"], str):
            raise ValueError(f"{manifest}: row {lineno}: 'task' must be a string (a manifest of python -m hasrd.lm.recipe)")
        if row["task"] == "ss" and not row.get("target2"):
            raise ValueError(f"{manifest}: row {lineno}: an ss row needs target2")
    return rows


def examples_of(rows: list[dict]) -> list[Example]:
    out: list[Example] = []
    for i, row in enumerate(rows):
        targets = list(SS_SLOTS) if row["task"] == "ss" else [row["task"]]
        for task in targets:
            out.append(Example(task, i, len(out), row.get("query")))
    return out


@dataclass
class LMFeatures:
    """``cond``/``ref`` ``[frames, D]`` float16 per row, ``codes`` ``[frames, Q]`` int16 per example,
    each with an offset table (rows without a ref have an empty span)."""

    cond: torch.Tensor
    cond_off: torch.Tensor
    ref: torch.Tensor
    ref_off: torch.Tensor
    codes: torch.Tensor
    code_off: torch.Tensor

    def span(self, name: str, i: int) -> tuple[int, int]:
        off = getattr(self, f"{name}_off")
        return int(off[i]), int(off[i + 1])


def cache_path(manifest: str | Path, codec) -> Path:
    digest = hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:12]
    return Path(manifest).parent / f"lm-features-v2-{codec.fingerprint()}-{digest}.safetensors"


def _offsets(lengths: list[int]) -> torch.Tensor:
    off = torch.zeros(len(lengths) + 1, dtype=torch.long)
    if lengths:
        off[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
    return off


def content_dims(codec) -> slice:
    """The latent channels that carry content: the dual-stream codec's semantic stream, else all."""
    branches = getattr(codec, "_branch_dims", None)
    return slice(0, int(branches[0])) if branches else slice(None)


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each of ``a``'s ``N`` frames (``[N, D]``), the index of its frame of ``b`` (``[M, D]``):
    an int64 ``[N]`` path, non-decreasing, from 0 to ``M - 1``, advancing 0..S frames of ``b`` per
    frame of ``a`` (``S = max(2, ceil((M-1)/(N-1)) + 1)``), of least summed cost 1 - cosine on
    features standardised over the pair (dynamic time warping, :func:`librosa.sequence.dtw`). One
    frame of ``a`` gives ``[0]``."""
    import librosa

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    N, M = a.shape[0], b.shape[0]
    if N == 0 or M == 0:
        raise ValueError(f"dtw_path: empty sequence ({N} and {M} frames)")
    if N == 1:
        return np.zeros(1, np.int64)
    both = np.concatenate([a, b])
    mu, sd = both.mean(0), both.std(0) + 1e-8
    x, y = (a - mu) / sd, (b - mu) / sd
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-8
    y /= np.linalg.norm(y, axis=1, keepdims=True) + 1e-8
    S = max(2, -(-(M - 1) // (N - 1)) + 1)
    steps = np.stack([np.ones(S + 1, np.int64), np.arange(S + 1)], 1)  # one frame of a, s frames of b
    _, wp = librosa.sequence.dtw(C=1.0 - x @ y.T, step_sizes_sigma=steps, weights_add=np.zeros(S + 1),
                                 weights_mul=np.ones(S + 1))
    path = np.zeros(N, np.int64)
    path[wp[:, 0]] = wp[:, 1]  # every step advances a by one frame: one b index per a frame
    return path


def compute_features(manifest: str | Path, view, progress: bool = True) -> LMFeatures:
    from tqdm import tqdm

    from ..io.audio import load_audio

    codec = view.codec
    rows = read_rows(manifest)
    D, Q = view.latent_dim, codec.num_codebooks
    content = content_dims(codec)
    parts: dict[str, list] = {"cond": [], "ref": [], "codes": []}
    lengths: dict[str, list[int]] = {"cond": [], "ref": [], "codes": []}

    def wav(path: Path) -> torch.Tensor:
        return torch.from_numpy(load_audio(path, codec.sample_rate, mono=True)[0]).float()[None]  # [1, 1, T]

    for row in tqdm(rows, desc="encoding examples", unit="ex", disable=not progress, file=sys.stderr):
        x = wav(row["input"])
        gain = level_gain(x)
        z, _ = view.analyse(x * gain)
        parts["cond"].append(z[0].T.half())
        lengths["cond"].append(z.shape[-1])
        if row.get("ref"):
            r = wav(row["ref"])
            zr, _ = view.analyse(r * level_gain(r))
            parts["ref"].append(zr[0].T.half())
        lengths["ref"].append(parts["ref"][-1].shape[0] if row.get("ref") else 0)
        if row["task"] == "vc":  # another recording: its own level, its frames aligned to the source's
            t = wav(row["target"])
            zt, codes = view.analyse(t * level_gain(t))
            path = dtw_path(z[0, content].T.float().numpy(), zt[0, content].T.float().numpy())
            parts["codes"].append(codes[0, :, torch.from_numpy(path)].T.to(torch.int16))
            lengths["codes"].append(len(path))
            continue
        for role in ("target", "target2") if row["task"] == "ss" else ("target",):
            _, codes = view.analyse(wav(row[role]) * gain)
            parts["codes"].append(codes[0].T.to(torch.int16))
            lengths["codes"].append(codes.shape[-1])
    cat = {"cond": torch.cat(parts["cond"]),
           "ref": torch.cat(parts["ref"]) if parts["ref"] else torch.zeros(0, D, dtype=torch.float16),
           "codes": torch.cat(parts["codes"]) if parts["codes"] else torch.zeros(0, Q, dtype=torch.int16)}
    return LMFeatures(cat["cond"], _offsets(lengths["cond"]), cat["ref"], _offsets(lengths["ref"]),
                      cat["codes"], _offsets(lengths["codes"]))


def load_or_compute(manifest: str | Path, view, progress: bool = True, write: bool = True) -> LMFeatures:
    """The cached features of ``manifest`` for ``view``'s codec, computed (and, with ``write``, saved) if missing."""
    from safetensors.torch import load_file, save_file

    from ..io.atomic import atomic_write

    path = cache_path(manifest, view.codec)
    if path.is_file():
        return LMFeatures(**load_file(str(path)))
    feats = compute_features(manifest, view, progress)
    if write:
        tensors = {k: v.contiguous() for k, v in vars(feats).items()}
        atomic_write(path, lambda p: save_file(tensors, str(p)))
    return feats


def latent_stats(feats: LMFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the condition latents (float64 accumulation)."""
    z = feats.cond.double()
    return z.mean(0).float(), z.std(0).clamp_min(1e-5).float()


class ExampleCrops(torch.utils.data.Dataset):
    """Training items of the examples whose task the LM has, keyed ``(epoch, index)`` as
    :class:`hasrd.train.data.StepBatchSampler` yields them (a crop depends on the seed, the epoch
    and the index only: exact resume, any number of processes).

    Every example's condition and target have the same frames (vc through :func:`dtw_path`; a
    one-line ValueError names the row otherwise); both are cropped to one random window of
    ``crop_frames``, for every task. A ref is cropped to a random window of ``ref_frames``. ``text``
    is the fixed query embedding.
    """

    def __init__(self, feats: LMFeatures, examples: list[Example], tasks: list[str], n_q: int, crop_frames: int,
                 ref_frames: int, text_dim: int, seed: int):
        self.f, self.n_q, self.crop, self.ref_frames = feats, int(n_q), int(crop_frames), int(ref_frames)
        self.tasks, self.text_dim, self.seed = list(tasks), int(text_dim), int(seed)
        self.examples = [e for e in examples if e.task in self.tasks]
        for e in self.examples:
            (ca, cb), (ta, tb) = feats.span("cond", e.row), feats.span("code", e.slot)
            if cb - ca != tb - ta:
                raise ValueError(f"manifest row {e.row + 1} ({e.task}): the condition has {cb - ca} frames and the "
                                 f"target {tb - ta}; every example needs as many target frames as condition frames")
        self.texts = {q: torch.from_numpy(text_embedding(q, self.text_dim))
                      for q in {e.query for e in self.examples if e.query} if self.text_dim}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        e = self.examples[index]
        g = np.random.default_rng([self.seed, epoch, index])
        (ca, cb), (ta, tb), (ra, rb) = self.f.span("cond", e.row), self.f.span("code", e.slot), self.f.span("ref", e.row)
        n = cb - ca
        if n > self.crop:
            start = int(g.integers(0, n - self.crop + 1))
            ca, cb, ta, tb = ca + start, ca + start + self.crop, ta + start, ta + start + self.crop
        if rb - ra > self.ref_frames:
            start = int(g.integers(0, rb - ra - self.ref_frames + 1))
            ra, rb = ra + start, ra + start + self.ref_frames
        return {"task": self.tasks.index(e.task), "cond": self.f.cond[ca:cb].float(),
                "ref": self.f.ref[ra:rb].float() if rb > ra else None,
                "text": self.texts.get(e.query) if e.query else None,
                "codes": self.f.codes[ta:tb, : self.n_q].long().T}


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n_i, D]`` -> ``[B, max n, D]`` and the mask ``[B, max n]`` (True = real)."""
    n = max(s.shape[0] for s in seqs)
    out = seqs[0].new_zeros(len(seqs), n, seqs[0].shape[1])
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]], mask[i, : s.shape[0]] = s, True
    return out, mask


def collate_examples(items: list[dict], ref_dim: int = 0, text_dim: int = 0) -> dict:
    """A batch for :meth:`LMNetwork.forward`. The layout is the same for every task (so that a
    batch may mix them and generation sees what training saw): with ``ref_dim``, an item without a
    ref gets one masked zero ref frame; with ``text_dim``, one without a query the zero vector."""
    cond, cond_mask = _pad([i["cond"] for i in items])
    codes = [i["codes"] for i in items]
    F = max(c.shape[1] for c in codes)
    targets = torch.zeros(len(items), codes[0].shape[0], F, dtype=torch.long)
    for b, c in enumerate(codes):
        targets[b, :, : c.shape[1]] = c
    batch = {"task": torch.tensor([i["task"] for i in items], dtype=torch.long), "cond": cond, "cond_mask": cond_mask,
             "targets": targets, "target_lengths": torch.tensor([c.shape[1] for c in codes], dtype=torch.long)}
    if ref_dim:
        refs = [i["ref"] if i["ref"] is not None else torch.zeros(1, ref_dim) for i in items]
        batch["ref"], batch["ref_mask"] = _pad(refs)
        for b, i in enumerate(items):
            if i["ref"] is None:
                batch["ref_mask"][b] = False
    if text_dim:
        batch["text"] = torch.stack([i["text"] if i["text"] is not None else torch.zeros(text_dim) for i in items])
    return batch
