"""Inputs and outputs of the batch commands: files, folders, globs and corpora resolved into
:class:`Job` s (one output each), this process's share of them (``accelerate launch``), running
them with one error line per failure, and the checks on ``-o``.

Only the standard library at import time: the corpus readers and torch are imported where they are used.
"""
from __future__ import annotations

import glob
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from hasrd.cli.errors import JobError, UsageError, debug_mode, one_line, problem_line
from hasrd.cli.progress import Reporter
from hasrd.dist import Dist

TOKEN_SUFFIX = ".hsrd"
LATENT_SUFFIX = ".hsrl"  # continuous codecs (hasrd.io.latentfile)
MANIFEST_NAME = "manifest.jsonl"
AUDIO_OUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


@dataclass
class Job:
    """One input and the output it is written to (None with an ``error``: nothing to write)."""

    src: Path  # or a hasrd.io.entry.Entry: a Lhotse cut or recording, a dataset row (its str() names it)
    out: Path | None
    resumable: bool = False  # found by hasrd in a folder or a quoted glob: finished outputs are skipped
    error: str | None = None  # could not even be resolved


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def is_corpus_input(text: str) -> bool:
    """A Lhotse manifest or an ``hf-dataset:`` spec (``hasrd encode``'s corpus inputs)."""
    from hasrd.io.corpora import is_dataset_spec, lhotse_kind

    return is_dataset_spec(text) or lhotse_kind(text) is not None


def _corpus_jobs(text: str, out: Path, suffix: str):
    """The jobs of a corpus input, named ``OUT/ID.SUFFIX`` by each cut's, recording's or row's id:
    a list, or an iterator for a streamed dataset (opened here, read as the jobs are taken)."""
    from hasrd.io.corpora import safe_name
    from hasrd.io.manifest import ManifestError, read_manifest

    try:
        entries = read_manifest(text, streaming_ok=True)
    except ManifestError as exc:  # a bad corpus is a usage error: nothing is written
        raise UsageError(one_line(str(exc))) from None
    jobs = (Job(e, out / (safe_name(e.id) + suffix), True) for e in entries)
    if not isinstance(entries, list):
        return jobs
    jobs = list(jobs)
    return jobs or [Job(Path(text), None, error="no entries in this corpus")]


def resolve_jobs(
    inputs: list[str], out: Path, out_is_file: bool, find: Callable[[Path], list[Path]],
    match: Callable[[Path], bool], suffix: str, corpora: bool = False,
) -> list[Job]:
    """Expand files, folders and glob patterns into (input, output) jobs, in a stable order.

    With ``corpora`` (``hasrd encode``), Lhotse manifests and ``hf-dataset:`` specs are corpora
    too (:func:`is_corpus_input`); when one of them is streamed, the jobs come as an iterator.
    """
    segments: list = []
    jobs: list[Job] = []
    for text in inputs:
        path = Path(text)
        if corpora and is_corpus_input(text):
            found = _corpus_jobs(text, out, suffix)
            if isinstance(found, list):
                jobs += found
            else:
                segments += [jobs, found]
                jobs = []
        elif path.is_dir():
            files = find(path)
            if not files:
                jobs.append(Job(path, None, error="no input files found in this folder"))
            jobs += [Job(f, out / f.relative_to(path).with_suffix(suffix), True) for f in files]
        elif path.exists():
            jobs.append(Job(path, out if out_is_file else out / (path.stem + suffix)))
        elif glob.has_magic(text):
            base = _glob_base(text)
            files: list[Path] = []
            for hit in sorted(glob.glob(text, recursive=True)):
                hit = Path(hit)
                if hit.is_dir():
                    files += [f for f in find(hit)]
                elif match(hit):
                    files.append(hit)
            files = sorted(set(files))
            if not files:
                jobs.append(Job(path, None, error="no files match this pattern"))
            for f in files:
                try:
                    rel = f.relative_to(base)
                except ValueError:
                    rel = Path(f.name)
                jobs.append(Job(f, out / rel.with_suffix(suffix), True))
        else:
            jobs.append(Job(path, None, error="no such file or directory"))
    if segments:  # a streamed dataset: the same checks, as the jobs are taken
        return _one_output_each(itertools.chain.from_iterable(segments + [jobs]))
    return list(_one_output_each(jobs))


def _source_key(src) -> str:
    key = getattr(src, "key", None)  # an Entry: its file and span, or its dataset row
    return key if key is not None else os.path.abspath(src)


def _one_output_each(jobs):
    """One output per input: drop exact repeats, refuse two inputs writing the same output."""
    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.out is None:
            yield job
            continue
        key = Path(os.path.abspath(job.out))
        first = seen.get(key)
        if first is None:
            seen[key] = job
            yield job
        elif _source_key(first.src) != _source_key(job.src):
            yield Job(job.src, None, error=f"output {job.out} is also the output of {first.src}; rename one")


def my_jobs(jobs: list[Job], dist: Dist, out_root: Path, out_is_file: bool, verb: str):
    """This process's share of ``jobs`` and its :class:`Reporter`, or None (after one error line
    from the main process) when the output folder cannot be created or written."""
    if isinstance(jobs, list):
        mine = jobs[dist.rank::dist.world]
    else:  # a streamed dataset: every process reads the stream and takes every world-th job
        mine = itertools.islice(jobs, dist.rank, None, dist.world)
    report = Reporter(len(mine) if isinstance(mine, list) else None, verb, show=dist.main)
    check_dir = out_root.parent if out_is_file else out_root
    try:
        check_out_dir(check_dir)
    except JobError as exc:
        if dist.main:  # every process finds the same; one says it
            report.error(f"{check_dir}: {exc}")
        return None
    return mine, report


def run_jobs(jobs: list[Job], report: Reporter, work: Callable[[Job], bool]) -> tuple[int, int]:
    """Run ``work`` on every job: ``(done, skipped)``. ``work`` returns True when it wrote an output,
    False when it skipped one that was already there; a failure prints its one line and the batch
    goes on (``HASRD_DEBUG=1`` re-raises it)."""
    import torch

    done = skipped = 0
    with torch.inference_mode():
        for job in jobs:
            try:
                if job.error:
                    raise JobError(job.error)
                if work(job):
                    done += 1
                else:
                    skipped += 1
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                if debug_mode():
                    raise
                report.error(problem_line(exc, job.src))
            report.step()
    report.close()
    return done, skipped


def output_is_file(inputs: list[str], out: Path, file_suffixes: Iterable[str] | None, corpora: bool = False) -> bool:
    """Whether ``-o`` names one output file (True) or a folder (False).

    A folder: an existing folder, a name ending in ``/``, a name without a suffix, or any ``-o``
    with several inputs, a folder input or a glob (or, with ``corpora``, a corpus input). Otherwise
    (one input file, ``-o name.ext``) a file; for ``decode`` its suffix picks the audio format and
    must be a supported one.
    """
    one_file = len(inputs) == 1 and not Path(inputs[0]).is_dir() and (
        Path(inputs[0]).exists() or not glob.has_magic(inputs[0])
    ) and not (corpora and is_corpus_input(inputs[0]))
    folder_like = out.is_dir() or str(out).endswith(("/", os.sep)) or not out.suffix
    if folder_like:
        return False
    if not one_file:
        if file_suffixes is not None and out.suffix.lower() not in file_suffixes:
            return False  # a folder whose name has a dot
        raise UsageError(f"{out}: with several inputs, a folder or a glob, -o must name a folder")
    if file_suffixes is not None and out.suffix.lower() not in file_suffixes:
        raise UsageError(
            f"{out}: cannot write {out.suffix} files; use one of {', '.join(sorted(file_suffixes))} "
            "(or a folder: end the name with /)"
        )
    return True


def check_out_dir(out: Path) -> None:
    """Refuse early an output folder that cannot be created or written (nothing is created yet)."""
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise JobError(f"cannot create the output folder: {probe} is a file")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise JobError(f"cannot write the output folder: permission denied on {probe}")


def make_parent(out: Path) -> None:
    """Create the folder ``out`` goes in; a failure is a :class:`JobError` of one line."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        probe = out.parent
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise JobError(f"cannot create the output folder {out.parent}: {probe} is a file") from None
        raise JobError(f"cannot create the output folder {out.parent}: {exc.strerror or exc}") from None
