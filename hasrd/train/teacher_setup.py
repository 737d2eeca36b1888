"""The codec task's semantic teacher: built from the ``teacher`` section, its k-means units fitted
(or read from a cache made by ``python -m hasrd.teachers.cache``), checked against the codec's
semantic head and frame rate, and its targets per training batch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..nn.framerate import FrameRateError
from ..teachers import KMeansUnits, build_teacher
from ..teachers.cache import TeacherCache, data_root, kmeans_frames, kmeans_sha256
from ..teachers.targets import on_the_fly_targets
from .config import TrainingError


@dataclass
class Teacher:
    """The run's teacher: a model (``module``) or a cache of its targets (``cache``), or neither."""

    module: object | None = None
    cache: TeacherCache | None = None
    context: str = "utterance"  # utterance: targets of the whole utterance, sliced; crop: of the crop

    @property
    def active(self) -> bool:
        return self.module is not None or self.cache is not None

    def targets(self, codec, batch: torch.Tensor, extra: dict, num_frames: int, device) -> dict[str, torch.Tensor]:
        """Teacher targets at the codec frame rate: cached, whole-utterance on the fly, or (context crop) of the crop."""
        if "features" in extra:  # the cache (converted to the codec frame rate by the dataset)
            target = {k: extra[k].to(device) for k in ("features", "units") if k in extra}
        elif "utterance" in extra:
            target = on_the_fly_targets(self.module, extra["utterance"], extra["start"].tolist(), batch.shape[-1],
                                        codec.sample_rate, codec.hop_length, device=device)
        else:
            return self.module.targets(codec.pad_to_hop(batch), num_frames, codec.frame_rate)
        if target["features"].shape[1] != num_frames:
            raise FrameRateError(f"teacher targets have {target['features'].shape[1]} frames, the codec {num_frames}")
        return target


def prepare_teacher(cfg: dict, codec, entries: list, out: Path, acc, kmeans_limit: int, seed: int) -> Teacher:
    """The :class:`Teacher` of ``cfg["teacher"]`` for ``codec`` and the training ``entries``.

    k-means units are fitted on the main process (with the teacher on the accelerator's device)
    into ``RUN/teacher_kmeans.safetensors`` while the others wait for it.
    """
    tcfg = dict(cfg.get("teacher") or {})
    context = tcfg.pop("context", "utterance")
    if not tcfg:
        return Teacher(context=context)
    if context not in ("utterance", "crop"):
        raise TrainingError(f"teacher.context must be 'utterance' or 'crop', not {context!r}")
    n_units = tcfg.pop("n_units", None)
    cache_dir = tcfg.pop("cache", None)
    model_cfg = cfg["model"]
    if cache_dir:
        cache = _open_cache(Path(cache_dir), tcfg, n_units, entries, cfg, codec, out, acc, context)
        check_heads(model_cfg, cache, cache.n_units if cache.use_units else None)
        return Teacher(cache=cache, context=context)
    teacher = build_teacher(tcfg)
    teacher.to(acc.device)
    if n_units and teacher.n_units is None:
        path = out / "teacher_kmeans.safetensors"
        if acc.is_main_process and not path.exists():
            acc.print(f"fitting {n_units} k-means teacher units on the training set ...")
            frames = kmeans_frames(teacher, entries, kmeans_limit, seed)
            KMeansUnits.fit(np.asarray(frames), int(n_units), seed=seed).save(path)
        acc.wait_for_everyone()
        teacher.set_kmeans(KMeansUnits.load(path))
    check_heads(model_cfg, teacher, teacher.n_units)
    if context == "utterance":
        check_frame_rates(teacher.frame_rate, codec.frame_rate)
    return Teacher(module=teacher, context=context)


def check_frame_rates(teacher_rate: float, codec_rate: float) -> None:
    """Utterance-level targets slice whole teacher frames: a crop (codec frames) must be whole teacher frames."""
    ratio = teacher_rate / codec_rate
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise TrainingError(f"the teacher's {teacher_rate:g} Hz frames are not a whole multiple of the codec's "
                            f"{codec_rate:g} Hz: use teacher.context: crop")


def check_heads(model_cfg: dict, teacher, n_units) -> None:
    """The codec's semantic head must predict what the teacher gives (units, feature size)."""
    head = model_cfg.get("semantic_head", {})
    if head.get("n_units", 0) and n_units != head["n_units"]:
        raise TrainingError(f"model.semantic_head.n_units={head['n_units']} but the teacher has {n_units} units")
    if head.get("dim", 0) and head["dim"] != teacher.dim:
        raise TrainingError(f"model.semantic_head.dim={head['dim']} but the teacher's features have {teacher.dim}")


def _open_cache(directory: Path, tcfg: dict, n_units, entries, cfg: dict, codec, out: Path, acc,
                context: str) -> TeacherCache:
    """A cache built by ``python -m hasrd.teachers.cache`` for this teacher and data (else an error)."""
    if context != "utterance":
        raise TrainingError("teacher.cache holds utterance-level targets; it cannot be used with teacher.context: crop")
    cache = TeacherCache(directory)
    cache.check(tcfg, n_units)
    check_frame_rates(cache.frame_rate, codec.frame_rate)
    if cache.use_units and not tcfg.get("kmeans"):  # the run's units are the cache's
        path, km = out / "teacher_kmeans.safetensors", cache.kmeans()
        if km is None:
            raise TrainingError(f"teacher.cache {directory} has no {directory / 'kmeans.safetensors'}")
        if acc.is_main_process and not path.exists():
            km.save(path)
        acc.wait_for_everyone()
        if kmeans_sha256(KMeansUnits.load(path)) != cache.kmeans_sha256:
            raise TrainingError(f"{path} (this run's k-means units) differs from the units in teacher.cache {directory}")
    cache.bind(entries, data_root(cfg["data"]["train"]))
    return cache
