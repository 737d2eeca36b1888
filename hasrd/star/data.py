"""Data of speech-to-audio training: sound-event clips, spoken prompts, their cached features,
the semantic targets, and the training items made from them.

- Event manifests (``python -m hasrd.events.recipe``): rows ``{path, class, descriptions: [str], ...}``.
- Prompt manifests (spoken descriptions): rows ``{path, text, class, ...}``; ``text`` is what the
  voice says, the target of the bridge.

Features are computed once and cached next to their manifest, as :mod:`hasrd.lm.data` does:
``star-prompts-<encoder fingerprint>-<spec hash>-<manifest hash>.safetensors`` (speech-encoder
features of each prompt, float16) and ``star-latents-<codec fingerprint>-<manifest hash>.safetensors``
(the continuous codec's latent of each clip, float32, at the clip's own level).

Items are keyed ``(epoch, index)`` as :class:`hasrd.train.data.StepBatchSampler` yields them and
draw their randomness from ``numpy.random.default_rng([seed, epoch, index])`` only, so a resumed
run sees exactly the items an uninterrupted one would.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..lm.tasks import text_embedding


def _read_jsonl(manifest: str | Path, need: tuple[str, ...], what: str) -> list[dict]:
    from ..io.manifest import read_rows

    return read_rows(manifest, need, ("path",), what)


def read_events(manifest: str | Path) -> list[dict]:
    """Rows of a sound-event manifest (paths resolved against its folder)."""
    rows = _read_jsonl(manifest, ("path", "class", "descriptions"), "a manifest of python -m hasrd.events.recipe")
    for r in rows:
        if isinstance(r["descriptions"], str):
            r["descriptions"] = [r["descriptions"]]
    return rows


def read_prompts(manifest: str | Path) -> list[dict]:
    """Rows of a spoken-prompt manifest (paths resolved against its folder)."""
    return _read_jsonl(manifest, ("path", "text", "class"), "spoken prompts: rows {path, text, class}")


def class_descriptions(event_rows: list[dict]) -> dict[str, list[str]]:
    """Class -> its descriptions (every distinct one of its rows, first-seen order), classes sorted."""
    out: dict[str, list[str]] = {}
    for r in event_rows:
        seen = out.setdefault(str(r["class"]), [])
        for d in r["descriptions"]:
            if d not in seen:
                seen.append(d)
    return {k: out[k] for k in sorted(out)}


def prototypes(descriptions: dict[str, list[str]], dim: int) -> np.ndarray:
    """``[classes, dim]``: per class the normalised mean of its descriptions' text vectors."""
    protos = []
    for descs in descriptions.values():
        v = np.mean([text_embedding(d, dim) for d in descs], axis=0)
        protos.append(v / max(float(np.linalg.norm(v)), 1e-8))
    return np.asarray(protos, np.float32)


@dataclass
class SeqCache:
    """Sequences ``[frames, C]`` of every row, concatenated, with an offset table."""

    feats: torch.Tensor
    off: torch.Tensor

    def __len__(self) -> int:
        return len(self.off) - 1

    def get(self, i: int) -> torch.Tensor:
        return self.feats[int(self.off[i]):int(self.off[i + 1])]


def _digest(manifest: str | Path) -> str:
    return hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:12]


def prompt_cache_path(manifest: str | Path, encoder) -> Path:
    from .encoders import spec_key

    return Path(manifest).parent / f"star-prompts-{encoder.fingerprint()}-{spec_key(encoder.spec)}-{_digest(manifest)}.safetensors"


def latent_cache_path(manifest: str | Path, codec) -> Path:
    return Path(manifest).parent / f"star-latents-{codec.fingerprint()}-{_digest(manifest)}.safetensors"


def _load_or(path: Path, compute, write: bool) -> SeqCache:
    from safetensors.torch import load_file, save_file

    from ..io.atomic import atomic_write

    if path.is_file():
        return SeqCache(**load_file(str(path)))
    cache = compute()
    if write:
        tensors = {"feats": cache.feats.contiguous(), "off": cache.off.contiguous()}
        atomic_write(path, lambda p: save_file(tensors, str(p)))
    return cache


def _stack(parts: list[torch.Tensor], dim: int, dtype) -> SeqCache:
    off = torch.zeros(len(parts) + 1, dtype=torch.long)
    off[1:] = torch.cumsum(torch.tensor([p.shape[0] for p in parts], dtype=torch.long), 0)
    feats = torch.cat(parts).to(dtype) if parts else torch.zeros(0, dim, dtype=dtype)
    return SeqCache(feats, off)


def prompt_features(manifest: str | Path, encoder, progress: bool = True, write: bool = True) -> SeqCache:
    """The cached speech-encoder features of every prompt (computed and saved if missing)."""
    from tqdm import tqdm

    from ..io.audio import load_audio

    def compute() -> SeqCache:
        parts = []
        for r in tqdm(read_prompts(manifest), desc="encoding prompts", unit="prompt", disable=not progress, file=sys.stderr):
            x = torch.from_numpy(load_audio(r["path"], encoder.sample_rate, mono=True)[0]).float()[None]
            parts.append(encoder.features(x).half())
        return _stack(parts, encoder.dim, torch.float16)

    return _load_or(prompt_cache_path(manifest, encoder), compute, write)


def clip_latents(manifest: str | Path, codec, progress: bool = True, write: bool = True) -> SeqCache:
    """The cached continuous-codec latents ``[F, D]`` of every event clip (computed and saved if missing)."""
    from tqdm import tqdm

    from ..io.audio import load_audio

    @torch.inference_mode()
    def compute() -> SeqCache:
        parts = []
        for r in tqdm(read_events(manifest), desc="encoding clips", unit="clip", disable=not progress, file=sys.stderr):
            x = torch.from_numpy(load_audio(r["path"], codec.sample_rate, mono=True)[0]).float()[None]
            parts.append(codec.encode_to_latent(x)[0].T.float())
        return _stack(parts, int(codec.latent_dim), torch.float32)

    return _load_or(latent_cache_path(manifest, codec), compute, write)


def latent_stats(cache: SeqCache) -> tuple[torch.Tensor, torch.Tensor]:
    z = cache.feats.double()
    return z.mean(0).float(), z.std(0).clamp_min(1e-5).float()


class PromptItems(torch.utils.data.Dataset):
    """Stage-1 items: a prompt's features (a random window of ``max_frames`` when longer), its
    text's vector and its class index."""

    def __init__(self, cache: SeqCache, rows: list[dict], classes: list[str], dim: int, max_frames: int, seed: int):
        self.cache, self.rows, self.max_frames, self.seed = cache, rows, int(max_frames), int(seed)
        index = {c: i for i, c in enumerate(classes)}
        extra = sorted({str(r["class"]) for r in rows} - set(index))
        for c in extra:  # prompt classes with no event clip still get an id (positives of each other)
            index[c] = len(index)
        self.cls = [index[str(r["class"])] for r in rows]
        self.texts = {t: torch.from_numpy(text_embedding(t, dim)) for t in {r["text"] for r in rows}}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        x = self.cache.get(index)
        if x.shape[0] > self.max_frames:
            start = int(np.random.default_rng([self.seed, epoch, index]).integers(0, x.shape[0] - self.max_frames + 1))
            x = x[start:start + self.max_frames]
        return {"x": x.float(), "text": self.texts[self.rows[index]["text"]], "cls": self.cls[index]}


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(max(s.shape[0] for s in seqs), 1)
    out = seqs[0].new_zeros(len(seqs), n, seqs[0].shape[1])
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]], mask[i, : s.shape[0]] = s, True
    return out, mask


def collate_prompts(items: list[dict]) -> dict:
    x, mask = _pad([i["x"] for i in items])
    return {"x": x, "mask": mask, "text": torch.stack([i["text"] for i in items]),
            "cls": torch.tensor([i["cls"] for i in items], dtype=torch.long)}


class ClipItems(torch.utils.data.Dataset):
    """Stage-2 items: a random window of ``crop_frames`` of a clip's standardised latent ``x1``,
    the noise ``x0``, the time ``t`` and the condition.

    The condition: with probability ``bridge_prob`` (when the clip's class has prompts) the frozen
    bridge's vector of a random spoken prompt of the class (``bridge_vectors``: class -> ``[n, S]``,
    computed once), else the text vector of a random description of the class; then, with
    probability ``cond_dropout``, ``drop`` (the model puts its null vector there).
    """

    def __init__(self, cache: SeqCache, rows: list[dict], descriptions: dict[str, list[str]], dim: int,
                 mean: torch.Tensor, std: torch.Tensor, crop_frames: int, seed: int,
                 bridge_vectors: dict[str, torch.Tensor] | None = None, bridge_prob: float = 0.0,
                 cond_dropout: float = 0.0):
        self.cache, self.rows, self.crop, self.seed = cache, rows, int(crop_frames), int(seed)
        self.mean, self.std = mean, std
        self.text = {c: torch.from_numpy(np.stack([text_embedding(d, dim) for d in ds])) for c, ds in descriptions.items()}
        self.bridge = bridge_vectors or {}
        self.bridge_prob, self.cond_dropout = float(bridge_prob), float(cond_dropout)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        g = np.random.default_rng([self.seed, epoch, index])
        z = self.cache.get(index)
        if z.shape[0] > self.crop:
            start = int(g.integers(0, z.shape[0] - self.crop + 1))
            z = z[start:start + self.crop]
        x1 = ((z.float() - self.mean) / self.std).T.contiguous()  # [D, n]
        x0 = torch.from_numpy(g.standard_normal(x1.shape).astype(np.float32))
        t = float(g.random())
        cls = str(self.rows[index]["class"])
        use_bridge = g.random() < self.bridge_prob
        pool = self.bridge.get(cls) if use_bridge and self.bridge.get(cls) is not None else self.text[cls]
        c = pool[int(g.integers(0, pool.shape[0]))].float()
        drop = bool(g.random() < self.cond_dropout)
        return {"x1": x1, "x0": x0, "t": t, "c": c, "drop": drop, "bridge": bool(use_bridge and cls in self.bridge)}


def collate_clips(items: list[dict]) -> dict:
    n = max(i["x1"].shape[1] for i in items)
    D = items[0]["x1"].shape[0]
    x1, x0 = torch.zeros(len(items), D, n), torch.zeros(len(items), D, n)
    mask = torch.zeros(len(items), n, dtype=torch.bool)
    for b, i in enumerate(items):
        k = i["x1"].shape[1]
        x1[b, :, :k], x0[b, :, :k], mask[b, :k] = i["x1"], i["x0"], True
    return {"x1": x1, "x0": x0, "mask": mask, "t": torch.tensor([i["t"] for i in items]),
            "c": torch.stack([i["c"] for i in items]), "drop": torch.tensor([i["drop"] for i in items]),
            "bridge": torch.tensor([i["bridge"] for i in items])}
