"""Training data: random fixed-length crops of a corpus, in an order that is a pure function of
(seed, step, rank), so a resumed run sees exactly the batches an uninterrupted run would have.

Why not ``accelerator.prepare(dataloader)`` + ``skip_first_batches``: replaying skipped batches
costs as much I/O as training on them, and crop offsets drawn from a global RNG differ after a
restart. Here each process takes its own slice of a per-epoch permutation, and each crop's offset
and gain come from a generator seeded by (seed, epoch, item), so any step can be started directly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..io.audio import resample
from ..io.entry import Entry, entry_info, load_entry
from .augment import ChannelAugment


@dataclass
class CropConfig:
    sample_rate: int
    segment_samples: int
    hop: int
    loudness_db: float | None = -20.0  # RMS target of each crop in dBFS; None keeps the level
    gain_jitter_db: float = 0.0  # augmentation: uniform random gain of +- this many dB
    seed: int = 0
    speed_factors: tuple[float, ...] = ()  # augmentation: each crop plays one of these times faster
    augment: ChannelAugment | None = None  # augmentation: a random recording channel on each crop

    def __post_init__(self):
        if not isinstance(self.speed_factors, (list, tuple)):
            raise ValueError(f"train.speed_perturb must be a list of factors (e.g. [0.9, 1.0, 1.1]), not {self.speed_factors!r}")
        self.speed_factors = tuple(float(f) for f in self.speed_factors)
        bad = [f for f in self.speed_factors if not 0.5 <= f <= 2.0]
        if bad:
            raise ValueError(f"train.speed_perturb: factors must lie in [0.5, 2], got {bad}")


def change_speed(audio: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """``audio`` played ``factor`` times faster: tempo, pitch and formants all scale by ``factor``
    (Kaldi-style speed perturbation). The input is read as if sampled at ``factor * sample_rate``
    and resampled to ``sample_rate``, so ``n`` samples become about ``n / factor``."""
    if factor == 1.0:
        return audio
    return resample(audio, int(round(sample_rate * factor)), sample_rate)


class CropDataset(Dataset):
    """``dataset[(epoch, index)]`` -> ``FloatTensor[1, segment_samples]`` (zero-padded if short).

    Crop starts are multiples of the codec hop, so frame ``i`` of a crop is frame ``start/hop + i``
    of the file (what the precomputed teacher cache indexes).

    With teacher targets, an item is a dict instead: ``{"audio", "start"}`` (``start``: the crop's
    first sample in the file, at ``sample_rate``) plus

    * ``teacher_cache`` (a :class:`hasrd.teachers.cache.TeacherCache` bound to ``entries``):
      ``"features"`` ``[frames, dim]`` (and ``"units"`` ``[frames]``), the cached frames of the
      crop converted to the codec frame rate (``frames = segment_samples / hop``);
    * ``utterance_rate`` (the teacher's sample rate, on-the-fly targets): ``"utterance"``, the
      whole file ``[1, T]`` at that rate, for :func:`hasrd.teachers.cache.on_the_fly_targets`.

    Batch such items with :func:`collate_crops`.

    Speed perturbation (``cfg.speed_factors``): each item draws a factor ``s`` and is a crop of the
    file played ``s`` times faster (:func:`change_speed`). ``start`` then counts samples of the
    perturbed file, and ``"utterance"`` is the whole perturbed file, so on-the-fly teacher targets
    stay aligned with the crop. A teacher cache holds targets of the unperturbed files only, so the
    two cannot be combined.

    Channel augmentation (``cfg.augment``, :class:`hasrd.train.augment.ChannelAugment`): each crop
    goes through a random room, colour, band limit and noise before the level is set, drawn from
    its own generator seeded by (seed, epoch, item), so turning it on leaves every crop's file,
    offset, speed and gain as they were. Teacher targets stay those of the clean file.
    """

    def __init__(self, entries: list[Entry], cfg: CropConfig, teacher_cache=None, utterance_rate: int | None = None):
        if not entries:
            raise ValueError("the training set is empty")
        if teacher_cache is not None and cfg.speed_factors and set(cfg.speed_factors) != {1.0}:
            raise ValueError("speed perturbation needs on-the-fly teacher targets: a teacher cache holds "
                             "targets of the unperturbed files (drop teacher.cache or train.speed_perturb)")
        self.entries, self.cfg = entries, cfg
        self.teacher_cache, self.utterance_rate = teacher_cache, utterance_rate
        self.durations = []
        for e in entries:  # a file, a Lhotse cut's span of one, or a dataset row (hasrd.io.entry)
            info = entry_info(e)
            self.durations.append(info["frames"] / info["sample_rate"])

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        epoch, index = key
        cfg = self.cfg
        g = np.random.default_rng([cfg.seed, epoch, index])
        speed = float(g.choice(cfg.speed_factors)) if cfg.speed_factors else 1.0
        seg_s = cfg.segment_samples / cfg.sample_rate
        dur = self.durations[index] / speed  # of the perturbed file
        n_hops = max(0, int((dur - seg_s) * cfg.sample_rate) // cfg.hop)
        start = int(g.integers(0, n_hops + 1)) * cfg.hop if n_hops > 0 else 0
        audio, _ = load_entry(self.entries[index], cfg.sample_rate, start=start * speed / cfg.sample_rate,
                              duration=seg_s * speed)
        x = change_speed(audio[0], speed, cfg.sample_rate)[: cfg.segment_samples]
        if x.shape[0] < cfg.segment_samples:
            x = np.pad(x, (0, cfg.segment_samples - x.shape[0]))
        if cfg.augment is not None:
            x = cfg.augment(x, cfg.sample_rate, np.random.default_rng([cfg.seed, epoch, index, 1]))
        if cfg.loudness_db is not None:
            rms = float(np.sqrt(np.mean(x**2)) + 1e-8)
            if rms > 1e-4:  # leave silence silent
                target = cfg.loudness_db + (g.uniform(-1, 1) * cfg.gain_jitter_db if cfg.gain_jitter_db else 0.0)
                x = x * (10 ** (target / 20) / rms)
                peak = float(np.abs(x).max())
                if peak > 0.99:
                    x = x * (0.99 / peak)
        crop = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)
        if self.teacher_cache is None and self.utterance_rate is None:
            return crop
        item = {"audio": crop, "start": start}
        if self.teacher_cache is not None:
            item.update(self.teacher_cache.crop(index, start, cfg.segment_samples, cfg.sample_rate, cfg.hop))
        if self.utterance_rate is not None:
            whole, _ = load_entry(self.entries[index], self.utterance_rate)
            whole = change_speed(whole[0], speed, self.utterance_rate)[None]
            item["utterance"] = torch.from_numpy(np.ascontiguousarray(whole, dtype=np.float32))
        return item


def collate_crops(items: list):
    """Batch :class:`CropDataset` items: tensors are stacked, whole utterances kept as a list."""
    if isinstance(items[0], torch.Tensor):
        return torch.stack(items)
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key == "utterance":
            out[key] = values
        elif key == "start":
            out[key] = torch.tensor(values, dtype=torch.long)
        else:
            out[key] = torch.stack(values)
    return out


class StepBatchSampler(Sampler):
    """Yields batches of ``(epoch, index)`` keys for steps ``start_step, start_step+1, ...`` forever.

    Epoch ``e`` is a permutation of the data seeded by ``(seed, e)``; process ``rank`` of ``world``
    takes items ``rank::world`` of it, ``batch_size`` at a time (the tail that does not fill a
    batch on every process is dropped, so all processes take the same number of steps).
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start_step: int = 0):
        self.n, self.bs, self.seed, self.rank, self.world = n_items, batch_size, seed, rank, world
        self.steps_per_epoch = (n_items // world) // batch_size
        if self.steps_per_epoch < 1:
            # small corpora: cycle the permutation so every process still fills its batches
            self.steps_per_epoch = 1
        self.start_step = start_step

    def _epoch_items(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        need = self.steps_per_epoch * self.bs * self.world
        reps = math.ceil(need / self.n)
        perm = (perm * reps)[:need]
        return perm[self.rank :: self.world]

    def __iter__(self):
        step = self.start_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            items = self._epoch_items(epoch)
            for p in range(pos, self.steps_per_epoch):
                yield [(epoch, i) for i in items[p * self.bs : (p + 1) * self.bs]]
            step = (epoch + 1) * self.steps_per_epoch

    def __len__(self) -> int:  # infinite; a large number keeps DataLoader happy
        return 2**62
