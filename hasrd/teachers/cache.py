"""The teacher cache: precomputed whole-utterance teacher frames, one file per utterance, sharded
over processes when it is built. What a crop's targets are is defined in
:mod:`hasrd.teachers.targets`; this module stores and serves exactly those frames.

The cache: ``CACHE/index.json`` (the teacher's identity) and one safetensors file per utterance,
``CACHE/<k[:2]>/<k>.safetensors``, where ``k`` is the SHA-1 of the file's path relative to the data
root (the ``data.train`` folder, or the manifest's folder). Each holds ``features``
(``[frames, dim]``, float16 unless a value does not fit) and, if the teacher has k-means units,
``units`` (``[frames]``, int32).

Build it with ``python -m hasrd.teachers.cache --config X.yaml --output CACHE [key=value ...]``,
alone or under ``accelerate launch --multi_gpu --num_processes N`` (each process takes every N-th
file; finished files are skipped; every file is written to a temp name and renamed).

The cache is kept in one file with its identity check (the index records the teacher's
construction parameters and k-means centroids, :func:`teacher_params`), because a cache is only
valid for one teacher: the key scheme, the index, the build loop and the reader are the generic
part, and they are small.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .base import Teacher
from .kmeans import KMeansUnits
from .targets import crop_targets, take_frames, teacher_hop, utterance_frames

CACHE_FORMAT = 1
INDEX_NAME = "index.json"
KMEANS_NAME = "kmeans.safetensors"
TARGETS = "utterance"
# keys of the ``teacher`` config section that the trainer reads and the teacher itself does not take
TRAINER_KEYS = ("n_units", "cache", "context")


class TeacherCacheError(ValueError):
    """A teacher cache is missing, incomplete, or was built for another teacher."""


def kmeans_frames(teacher: Teacher, paths: list, budget: int, seed: int) -> np.ndarray:
    """Up to ``budget`` whole-utterance teacher frames of a random order of ``paths`` (k-means
    fitting; files or :class:`~hasrd.io.entry.Entry` items: Lhotse cuts, dataset rows)."""
    from ..io.entry import load_entry

    frames, total = [], 0
    for i in np.random.default_rng(seed).permutation(len(paths)):
        audio, _ = load_entry(paths[i], teacher.sample_rate)
        if audio.shape[-1] == 0:
            continue
        f = utterance_frames(teacher, torch.from_numpy(audio[0]))["features"].cpu().numpy()
        frames.append(f)
        total += len(f)
        if total >= budget:
            break
    if not frames:
        raise TeacherCacheError("no audio to fit k-means units on")
    return np.concatenate(frames)[:budget]


# ------------------------------------------------------------------------------------------------
# identity


def teacher_params(tcfg: dict) -> dict:
    """The teacher's construction parameters with defaults filled in (its identity, minus k-means)."""
    from .mfcc import MFCCTeacher
    from .ssl import SSLTeacher

    cfg = {k: v for k, v in (tcfg or {}).items() if k not in TRAINER_KEYS}
    kind = cfg.pop("type", None)
    classes = {"mfcc": MFCCTeacher, "hubert": SSLTeacher, "wavlm": SSLTeacher}
    if kind not in classes:
        raise TeacherCacheError(f"unknown teacher type {kind!r}; use mfcc, hubert or wavlm")
    sig = inspect.signature(classes[kind].__init__)
    params = {name: p.default for name, p in sig.parameters.items() if name != "self"}
    unknown = sorted(set(cfg) - set(params))
    if unknown:
        raise TeacherCacheError(f"teacher: unknown option(s) {unknown} for type {kind}")
    params.update(cfg)
    params.pop("kmeans", None)
    if kind != "mfcc":
        params["arch"] = kind
        if isinstance(params.get("layers"), int):
            params["layers"] = [params["layers"]]
    return json.loads(json.dumps({"type": kind, **params}, sort_keys=True))


def kmeans_sha256(km: KMeansUnits | None) -> str | None:
    if km is None:
        return None
    c = km.centroids.detach().cpu().float().contiguous()
    h = hashlib.sha256(str(tuple(c.shape)).encode())
    h.update(c.numpy().astype("<f4").tobytes())
    return h.hexdigest()[:16]


def _differences(cached: dict, wanted: dict) -> list[str]:
    return [f"{k}: cache {cached.get(k)!r}, config {wanted.get(k)!r}"
            for k in sorted(set(cached) | set(wanted)) if cached.get(k) != wanted.get(k)]


def data_root(source: str | os.PathLike) -> Path:
    """The folder cache keys are relative to: ``data.train`` itself if a folder, else its folder."""
    p = Path(os.path.abspath(source))
    return p if p.is_dir() else p.parent


def relative_key(path, root: Path) -> tuple[str, str]:
    """``(relative path, key)`` of an audio file: paths outside ``root`` stay absolute.

    ``path`` may be an :class:`~hasrd.io.entry.Entry`: a plain file's key is its path's (so caches
    built from folders and JSONL stay valid); a Lhotse cut of part of a file adds its span
    (``REL#OFFSET+DURATION``); a dataset row is ``DATASET:SPLIT#ID`` (:attr:`Entry.key`).
    """
    span = None
    if hasattr(path, "span"):  # an Entry
        if path.audio is not None:
            rel = path.key
            return rel, hashlib.sha1(rel.encode("utf-8")).hexdigest()
        path, span = path.path, path.span
    p = Path(os.path.abspath(path))
    try:
        rel = p.relative_to(root).as_posix()
    except ValueError:
        rel = p.as_posix()
    if span is not None:
        rel += f"#{span[0]:.6f}+{span[1]:.6f}"
    return rel, hashlib.sha1(rel.encode("utf-8")).hexdigest()


def file_for(root: Path, key: str) -> Path:
    return root / key[:2] / f"{key}.safetensors"


# ------------------------------------------------------------------------------------------------
# reading


class TeacherCache:
    """A built cache, opened for training.

    Attributes from the index: ``sample_rate``, ``frame_rate``, ``dim``, ``n_units`` (units the
    cache holds), ``kmeans_sha256``. :meth:`check` refuses a cache of another teacher; :meth:`bind`
    maps the training entries to their files; :meth:`crop` gives one crop's targets.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        index = self.root / INDEX_NAME
        if not index.is_file():
            raise TeacherCacheError(f"teacher.cache {self.root}: not a teacher cache (no {INDEX_NAME}); "
                                    "build it with python -m hasrd.teachers.cache")
        try:
            self.index = json.loads(index.read_text())
        except ValueError:
            raise TeacherCacheError(f"teacher.cache {self.root}: {INDEX_NAME} is not valid JSON") from None
        if self.index.get("format") != CACHE_FORMAT or self.index.get("targets") != TARGETS:
            raise TeacherCacheError(f"teacher.cache {self.root}: format {self.index.get('format')!r} / targets "
                                    f"{self.index.get('targets')!r}, this version reads {CACHE_FORMAT} / {TARGETS!r}; rebuild it")
        self.sample_rate = int(self.index["sample_rate"])
        self.frame_rate = float(self.index["frame_rate"])
        self.dim = int(self.index["dim"])
        self.n_units = self.index.get("n_units")
        self.kmeans_sha256 = self.index.get("kmeans_sha256")
        self.use_units = False
        self.files: list[tuple[Path, str]] = []

    def check(self, tcfg: dict, n_units: int | None = None) -> None:
        """Refuse the cache unless it was built for this teacher config.

        ``tcfg`` is the ``teacher`` section; ``n_units`` asks for that many k-means units (fitted
        when the cache was built); a ``kmeans`` file in ``tcfg`` must be the one the cache used.
        Units are used only if the config asks for them.
        """
        wanted = teacher_params(tcfg)
        diff = _differences(self.index["teacher"], wanted)
        if diff:
            raise TeacherCacheError(f"teacher.cache {self.root} was built for another teacher ("
                                    + "; ".join(diff) + "); rebuild it or point teacher.cache elsewhere")
        if tcfg.get("kmeans"):
            mine = kmeans_sha256(KMeansUnits.load(tcfg["kmeans"]))
            if mine != self.kmeans_sha256:
                raise TeacherCacheError(f"teacher.cache {self.root} holds units of other k-means centroids "
                                        f"({self.kmeans_sha256}) than teacher.kmeans ({mine}); rebuild it")
            self.use_units = True
        elif n_units:
            if self.n_units != int(n_units):
                raise TeacherCacheError(f"teacher.cache {self.root} holds {self.n_units or 'no'} k-means units, "
                                        f"teacher.n_units asks for {n_units}; rebuild it")
            self.use_units = True

    def kmeans(self) -> KMeansUnits | None:
        path = self.root / KMEANS_NAME
        return KMeansUnits.load(path) if path.is_file() else None

    def bind(self, paths: list, root: Path) -> None:
        """Map the dataset's files (in order; paths or entries) to cache files; refuse if any is missing."""
        present = {p.stem for p in self.root.glob("??/*.safetensors")}
        self.files, missing = [], []
        for path in paths:
            rel, key = relative_key(path, root)
            if key not in present:
                missing.append(rel)
            self.files.append((file_for(self.root, key), rel))
        if missing:
            raise TeacherCacheError(f"teacher.cache {self.root} lacks {len(missing)} of {len(paths)} training files "
                                    f"(first: {missing[0]}); build it for this data.train")

    def read(self, index: int, k0: int, n: int) -> dict[str, torch.Tensor]:
        """Teacher frames ``k0 .. k0+n-1`` of bound file ``index`` (only that slice is read)."""
        from safetensors import safe_open

        path, rel = self.files[index]
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("path") != rel:
                raise TeacherCacheError(f"{path} holds the targets of {meta.get('path')!r}, not {rel!r}")
            out = {}
            for name in ("features", "units") if self.use_units else ("features",):
                sl = fh.get_slice(name)
                total = sl.get_shape()[0]
                part = sl[min(k0, total) : min(k0 + n, total)]
                if part.shape[0] < n:  # a crop past the end of a short file: repeat the last frame
                    part = take_frames(part if part.shape[0] else sl[total - 1 : total], 0, n)
                out[name] = part.float() if name == "features" else part.long()
        return out

    def crop(self, index: int, start: int, segment_samples: int, sample_rate: int, hop: int) -> dict[str, torch.Tensor]:
        """The targets of the crop of file ``index`` starting at sample ``start``, at the codec frame rate."""
        return crop_targets(lambda k0, n: self.read(index, k0, n), self.frame_rate, start, segment_samples, sample_rate, hop)


# ------------------------------------------------------------------------------------------------
# building


def _identity(teacher: Teacher, tcfg: dict, source: str) -> dict:
    from ..version import __version__

    km = getattr(teacher, "kmeans", None)
    return {
        "format": CACHE_FORMAT,
        "targets": TARGETS,
        "teacher": teacher_params(tcfg),
        "sample_rate": int(teacher.sample_rate),
        "frame_rate": float(teacher.frame_rate),
        "hop": teacher_hop(teacher),
        "dim": int(teacher.dim),
        "n_units": teacher.n_units,
        "kmeans_sha256": kmeans_sha256(km),
        "data": str(source),
        "hasrd_version": __version__,
    }


def _on_main_first(dist, fn):
    """Run ``fn`` on the main process; every process raises if it failed (no one left at a barrier)."""
    err = None
    if dist.main:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - passed on to every process
            err = str(exc) or type(exc).__name__
    if dist.world > 1:
        import torch.distributed as tdist

        box = [err]
        tdist.broadcast_object_list(box, src=0)
        err = box[0]
    if err:
        raise TeacherCacheError(err)


def save_frames(path: Path, frames: dict[str, torch.Tensor], rel: str, num_samples: int) -> None:
    """Write one utterance's frames atomically (temp name in the same folder, then rename)."""
    from safetensors.torch import save

    from ..io.tokenfile import atomic_write_bytes

    feats = frames["features"].detach().cpu().float()
    half = feats.half()
    tensors = {"features": (half if bool(torch.isfinite(half).all()) else feats).contiguous()}
    if "units" in frames:
        tensors["units"] = frames["units"].detach().cpu().to(torch.int32).contiguous()
    data = save(tensors, metadata={"path": rel, "num_samples": str(num_samples), "format": str(CACHE_FORMAT)})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def build_cache(cfg: dict, output: str | os.PathLike, dist=None) -> tuple[int, int, int]:
    """Compute and store the teacher targets of every ``data.train`` file; returns (done, skipped, failed).

    Under several processes each takes every ``world``-th file of the same de-duplicated list.
    """
    from ..io.manifest import read_manifest

    if dist is None:
        from ..dist import Dist

        dist = Dist()
    out = Path(output)
    tcfg = dict(cfg.get("teacher") or {})
    if not tcfg:
        raise TeacherCacheError("the config has no teacher section")
    if tcfg.get("context", "utterance") != "utterance":
        raise TeacherCacheError("a cache holds utterance-level targets; teacher.context must be 'utterance'")
    source = (cfg.get("data") or {}).get("train")
    if not source:
        raise TeacherCacheError("the config has no data.train (a directory or a JSONL/TSV manifest)")
    train = cfg.get("train") or {}
    entries = read_manifest(source)
    root = data_root(source)
    _refuse_other_teacher(out, teacher_params(tcfg))  # early, before any k-means fitting

    device = dist.state.device if (dist.state is not None and torch.cuda.is_available()) else "cpu"
    teacher = _cache_teacher(tcfg, out, source, entries, train, dist)
    teacher.to(device)
    identity = _identity(teacher, tcfg, source)
    _on_main_first(dist, lambda: _write_index(out, identity))
    return _cache_files(_my_jobs(entries, root, dist), out, teacher, device)


def _refuse_other_teacher(out: Path, wanted: dict) -> None:
    """Refuse an ``out`` that holds the cache of another teacher (by its recorded parameters)."""
    index_path = out / INDEX_NAME
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        diff = _differences(old.get("teacher", {}), wanted)
        if diff or old.get("format") != CACHE_FORMAT or old.get("targets") != TARGETS:
            raise TeacherCacheError(f"{out} holds a cache of another teacher (" + ("; ".join(diff) or "format")
                                    + "); use another --output or delete it")


def _cache_teacher(tcfg: dict, out: Path, source, entries: list, train: dict, dist) -> Teacher:
    """The teacher of ``tcfg``, with its k-means units (fitted once, by the main process, into
    ``out/kmeans.safetensors``) when ``teacher.n_units`` asks for units it does not have."""
    from . import build_teacher

    teacher = build_teacher({k: v for k, v in tcfg.items() if k not in TRAINER_KEYS})
    n_units = tcfg.get("n_units")
    if n_units and teacher.n_units is None:
        km_path = out / KMEANS_NAME

        def fit():
            out.mkdir(parents=True, exist_ok=True)
            if not km_path.is_file():
                print(f"fitting {n_units} k-means teacher units on {source} ...", flush=True)
                frames = kmeans_frames(teacher, entries, int(train.get("kmeans_frames", 200000)),
                                       int(train.get("seed", 0)))
                km = KMeansUnits.fit(frames, int(n_units), seed=int(train.get("seed", 0)))
                from safetensors.torch import save

                from ..io.tokenfile import atomic_write_bytes

                atomic_write_bytes(km_path, save({"centroids": km.centroids.contiguous()}))

        _on_main_first(dist, fit)
        teacher.set_kmeans(KMeansUnits.load(km_path))
        if teacher.n_units != int(n_units):
            raise TeacherCacheError(f"{km_path} holds {teacher.n_units} units, teacher.n_units asks for {n_units}")
    return teacher


def _write_index(out: Path, identity: dict) -> None:
    """Write ``out/index.json`` (or check the one there against ``identity``) and remove the
    temp files of a killed run; the main process does it while the others wait."""
    from ..io.tokenfile import atomic_write_bytes

    index_path = out / INDEX_NAME
    out.mkdir(parents=True, exist_ok=True)
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        keys = ("teacher", "sample_rate", "frame_rate", "hop", "dim", "n_units", "kmeans_sha256")
        diff = _differences({k: old.get(k) for k in keys}, {k: identity[k] for k in keys})
        if diff:
            raise TeacherCacheError(f"{out} holds a cache of another teacher (" + "; ".join(diff)
                                    + "); use another --output or delete it")
    else:
        atomic_write_bytes(index_path, (json.dumps(identity, indent=1, sort_keys=True) + "\n").encode())
    for tmp in out.rglob(".*.tmp"):  # leftovers of a killed run (the other processes wait meanwhile)
        tmp.unlink(missing_ok=True)


def _my_jobs(entries: list, root: Path, dist) -> list[tuple]:
    """This process's share of the jobs: one per distinct file (cut, row), in the manifest's order
    (the same on every process), every ``world``-th from ``rank``."""
    seen, jobs = set(), []
    for e in entries:
        rel, key = relative_key(e, root)
        if key not in seen:
            seen.add(key)
            jobs.append((e, rel, key))
    return jobs[dist.rank :: dist.world]


def _cache_files(jobs: list[tuple], out: Path, teacher: Teacher, device) -> tuple[int, int, int]:
    """Compute and save the frames of each job's file not cached yet: (done, skipped, failed)."""
    from ..io.entry import load_entry

    done = skipped = failed = 0
    for path, rel, key in jobs:
        target = file_for(out, key)
        if target.is_file():
            skipped += 1
            continue
        try:
            audio, _ = load_entry(path, teacher.sample_rate)
            frames = utterance_frames(teacher, torch.from_numpy(audio[0]).to(device))
            save_frames(target, frames, rel, audio.shape[-1])
            done += 1
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file does not stop the others
            failed += 1
            print(f"hasrd.teachers.cache: error: {path}: {exc}", file=sys.stderr, flush=True)
    return done, skipped, failed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hasrd.teachers.cache",
        description="Precompute the teacher's targets (features and k-means units) of every data.train file.",
        epilog="Several processes: accelerate launch --multi_gpu --num_processes N -m hasrd.teachers.cache ...",
    )
    p.add_argument("--config", required=True, help="the training config (its teacher, data.train, train.seed/kmeans_frames)")
    p.add_argument("--output", help="cache folder (default: the config's teacher.cache)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.train=corpus/ teacher.n_units=100")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..config import ConfigError, load_config
    from ..dist import distributed, summary

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"hasrd.teachers.cache: error: {exc}", file=sys.stderr)
        return 2
    output = args.output or (cfg.get("teacher") or {}).get("cache")
    if not output:
        print("hasrd.teachers.cache: error: no --output and no teacher.cache in the config", file=sys.stderr)
        return 2
    dist = distributed("cuda" if torch.cuda.is_available() else "cpu")
    if dist.world > 1 and not torch.cuda.is_available():
        torch.set_num_threads(1)
    try:
        done, skipped, failed = build_cache(cfg, output, dist)
    except (TeacherCacheError, ValueError, OSError) as exc:
        print(f"hasrd.teachers.cache: error: {exc}", file=sys.stderr, flush=True)
        return 1
    summary("cached", done, skipped, failed, dist)
    dist.barrier()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
