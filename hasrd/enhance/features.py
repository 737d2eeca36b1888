"""Codec representations of a recipe's noisy/clean pairs, computed once and cached.

The codec is frozen while the enhancer trains, so every pair is encoded once: the latent
(float16) and all codebooks' codes of the noisy and of the clean file, concatenated along frames
with an offset table, in one safetensors file next to the recipe's manifest, named after the
codec's fingerprint (``features-<fingerprint>.safetensors``). Both enhancer forms read the same file.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io.manifest import Entry, read_manifest

#: input level the enhancer works at (the codec was trained around it); see :func:`level_gain`
TARGET_DBFS = -20.0


def level_gain(wav: torch.Tensor, target_dbfs: float = TARGET_DBFS) -> torch.Tensor:
    """Per-item gain ``[B, 1, 1]`` bringing ``wav``'s RMS to ``target_dbfs`` (1 for silence)."""
    rms = wav.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
    gain = 10 ** (target_dbfs / 20) / rms.clamp_min(1e-8)
    return torch.where(rms > 1e-5, gain, torch.ones_like(gain))


@dataclass
class PairFeatures:
    """All pairs of one manifest: ``z_*`` ``[frames, D]`` float16, ``c_*`` ``[frames, Q]`` int16."""

    z_noisy: torch.Tensor
    z_clean: torch.Tensor
    c_noisy: torch.Tensor | None
    c_clean: torch.Tensor | None
    offsets: torch.Tensor  # [pairs + 1]

    def __len__(self) -> int:
        return int(self.offsets.numel() - 1)

    def span(self, i: int) -> tuple[int, int]:
        return int(self.offsets[i]), int(self.offsets[i + 1])


def pair_paths(manifest: Path) -> list[tuple[Path, Path]]:
    """``(noisy, clean)`` paths of every line of a recipe manifest (``noisy`` resolved like ``path``)."""
    entries: list[Entry] = read_manifest(manifest)
    pairs = []
    for e in entries:
        noisy = e.extra.get("noisy")  # resolved by read_manifest
        if not noisy:
            raise ValueError(f"{manifest}: {e.path} has no 'noisy' field (make pairs with python -m hasrd.enhance.recipe)")
        pairs.append((noisy, e.path))
    if not pairs:
        raise ValueError(f"{manifest}: no pairs")
    return pairs


def cache_path(manifest: Path, codec) -> Path:
    return Path(manifest).parent / f"features-{codec.fingerprint()}.safetensors"


def compute_features(manifest: str | Path, view, progress: bool = True) -> PairFeatures:
    """Encode every noisy/clean pair of ``manifest`` with ``view`` (a :class:`CodecView`)."""
    from tqdm import tqdm

    from ..io.audio import load_audio

    codec = view.codec
    rows: dict[str, list] = {"z_noisy": [], "z_clean": [], "c_noisy": [], "c_clean": []}
    lengths = []
    for noisy_path, clean_path in tqdm(pair_paths(Path(manifest)), desc="encoding pairs", unit="pair",
                                       disable=not progress, file=sys.stderr):
        noisy, _ = load_audio(noisy_path, codec.sample_rate, mono=True)
        clean, _ = load_audio(clean_path, codec.sample_rate, mono=True)
        if noisy.shape != clean.shape:
            raise ValueError(f"{noisy_path}: {noisy.shape[-1]} samples, its clean file {clean.shape[-1]}")
        x = torch.from_numpy(np.stack([noisy, clean])).float()  # [2, 1, T]
        x = x * level_gain(x[:1])  # the noisy file's gain on both: the pair stays aligned in level
        z, codes = view.analyse(x)
        rows["z_noisy"].append(z[0].T.half())
        rows["z_clean"].append(z[1].T.half())
        if codes is not None:
            rows["c_noisy"].append(codes[0].T.to(torch.int16))
            rows["c_clean"].append(codes[1].T.to(torch.int16))
        lengths.append(z.shape[-1])
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(lengths), 0)
    cat = {k: (torch.cat(v) if v else None) for k, v in rows.items()}
    return PairFeatures(cat["z_noisy"], cat["z_clean"], cat["c_noisy"], cat["c_clean"], offsets)


def load_or_compute(manifest: str | Path, view, progress: bool = True, write: bool = True) -> PairFeatures:
    """The cached features of ``manifest`` for ``view``'s codec, computed (and, with ``write``, saved) if missing."""
    from safetensors.torch import load_file, save_file

    from ..io.atomic import atomic_write

    path = cache_path(Path(manifest), view.codec)
    if path.is_file():
        t = load_file(str(path))
        return PairFeatures(t["z_noisy"], t["z_clean"], t.get("c_noisy"), t.get("c_clean"), t["offsets"])
    feats = compute_features(manifest, view, progress)
    if write:
        tensors = {k: v.contiguous() for k, v in vars(feats).items() if v is not None}
        atomic_write(path, lambda p: save_file(tensors, str(p)))
    return feats


class PairCrops(torch.utils.data.Dataset):
    """Random crops of ``frames`` frames of one pair (shorter pairs padded; ``lengths`` says how much is real).

    Items are keyed ``(epoch, index)`` as :class:`hasrd.train.data.StepBatchSampler` yields them,
    so the crop of a step does not depend on the number of processes or on a resume.
    """

    def __init__(self, feats: PairFeatures, form: str, frames: int, n_q: int | None, seed: int):
        self.f, self.form, self.frames, self.n_q, self.seed = feats, form, int(frames), n_q, int(seed)
        if form == "tokens" and feats.c_noisy is None:
            raise ValueError("the tokens form needs a token codec (these features have no codes)")

    def __len__(self) -> int:
        return len(self.f)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        a, b = self.f.span(index)
        n = b - a
        g = np.random.default_rng([self.seed, epoch, index])
        start = a + (int(g.integers(0, n - self.frames + 1)) if n > self.frames else 0)
        length = min(n, self.frames)
        if self.form == "continuous":
            x = self.f.z_noisy[start:start + length].float().T
            y = self.f.z_clean[start:start + length].float().T
        else:
            x = self.f.c_noisy[start:start + length, : self.n_q].long().T
            y = self.f.c_clean[start:start + length, : self.n_q].long().T
        pad = self.frames - length
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
            y = torch.nn.functional.pad(y, (0, pad))
        return {"input": x, "target": y, "length": length}


def collate_pairs(items: list[dict]) -> dict:
    return {"input": torch.stack([i["input"] for i in items]), "target": torch.stack([i["target"] for i in items]),
            "lengths": torch.tensor([i["length"] for i in items], dtype=torch.long)}


def latent_stats(feats: PairFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the clean latents (float64 accumulation)."""
    z = feats.z_clean.double()
    return z.mean(0).float(), z.std(0).float()
