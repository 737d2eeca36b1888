"""What every ``hasrd`` command shares: errors and exit codes, the one-line problem text, the
progress reporter, the process share of a corpus (``accelerate launch``), input and output
resolution, model loading, and the helpers more than one command uses (``_encode_file`` is
``encode``'s and ``entropy-fit``'s).

Only numpy at import time: torch and the rest are imported where they are used.
"""
from __future__ import annotations

import glob
import itertools
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from hasrd.dist import Dist

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TOKEN_SUFFIX = ".hsrd"
LATENT_SUFFIX = ".hsrl"  # continuous codecs (hasrd.io.latentfile)
MANIFEST_NAME = "manifest.jsonl"
DEFAULT_CHUNK_SECONDS = 30.0
AUDIO_OUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
MODEL_HELP = ("a built-in model (default, hcodec-25hz), a model folder written by save_pretrained, or a hub id "
              "org/name from the local Hugging Face hub cache (default: the built-in default model)")


class UsageError(Exception):
    """The command as a whole cannot run (bad option value, model not found): exit 2."""


class JobError(Exception):
    """One input failed; the message is the problem (the CLI prefixes the file)."""


# ---------------------------------------------------------------------------------------------
# small helpers


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _problem(exc: BaseException, src: Path | str) -> str:
    """``<file>: <problem>`` for any exception raised while working on ``src``."""
    from hasrd.io.audio import AudioError

    src = str(src)
    if isinstance(exc, AudioError):  # its message already starts with the file name
        text = str(exc)
        return _one_line(text if text.startswith(src) else f"{src}: {text}")
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        name = exc.filename if exc.filename and str(exc.filename) != src else None
        return _one_line(f"{src}: {what}" + (f": {name}" if name else ""))
    if isinstance(exc, (JobError, ValueError)):
        return _one_line(f"{src}: {exc}")
    return _one_line(f"{src}: unexpected {type(exc).__name__}: {exc}")


def _debug() -> bool:
    return os.environ.get("HASRD_DEBUG", "") not in ("", "0")


class Reporter:
    """Prints errors and drives the progress bar (stderr; shown only on a terminal)."""

    def __init__(self, total: int | None, desc: str, show: bool):
        self.bar = None
        if show and (total is None or total > 1):  # None: not known ahead (a streamed dataset)
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=None, leave=False)
            except ImportError:  # pragma: no cover
                self.bar = None
        self.failed = 0

    def error(self, message: str) -> None:
        self.failed += 1
        line = f"hasrd: error: {message}"
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _device(name: str, dist: Dist) -> str:
    if name == "auto":
        return str(dist.state.device) if dist.state is not None else "cpu"
    return name


# ---------------------------------------------------------------------------------------------
# inputs and outputs


@dataclass
class Job:
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
        raise UsageError(_one_line(str(exc))) from None
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


def _my_jobs(jobs: list[Job], dist: Dist, out_root: Path, out_is_file: bool, verb: str):
    """This process's share of ``jobs`` and its :class:`Reporter`, or None (after one error line
    from the main process) when the output folder cannot be created or written."""
    if isinstance(jobs, list):
        mine = jobs[dist.rank::dist.world]
    else:  # a streamed dataset: every process reads the stream and takes every world-th job
        mine = itertools.islice(jobs, dist.rank, None, dist.world)
    report = Reporter(len(mine) if isinstance(mine, list) else None, verb, show=dist.main)
    check_dir = out_root.parent if out_is_file else out_root
    try:
        _check_out_dir(check_dir)
    except JobError as exc:
        if dist.main:  # every process finds the same; one says it
            report.error(f"{check_dir}: {exc}")
        return None
    return mine, report


def _run_jobs(jobs: list[Job], report: Reporter, work: Callable[[Job], bool]) -> tuple[int, int]:
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
                if _debug():
                    raise
                report.error(_problem(exc, job.src))
            report.step()
    report.close()
    return done, skipped


def _output_mode(inputs: list[str], out: Path, file_suffixes: Iterable[str] | None, corpora: bool = False) -> bool:
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


def _check_out_dir(out: Path) -> None:
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


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        probe = out.parent
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise JobError(f"cannot create the output folder {out.parent}: {probe} is a file") from None
        raise JobError(f"cannot create the output folder {out.parent}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# the model


def _load(loader, spec: str | None, device: str, what: str):
    """``loader(spec)`` moved to ``device`` in eval mode; a missing or broken folder or a bad device
    is a :class:`UsageError` of one line (``what`` names the thing: model, enhancer)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = loader(spec)
    except FileNotFoundError as exc:
        raise UsageError(_one_line(str(exc))) from None
    except Exception as exc:  # a broken folder
        if _debug():
            raise
        raise UsageError(_one_line(f"{spec or 'default'}: cannot load the {what} ({type(exc).__name__}: {exc})")) from None
    try:
        loaded = loaded.to(device)
    except Exception as exc:
        raise UsageError(_one_line(f"--device {device}: {exc}")) from None
    return loaded.eval()


def _load_model(spec: str | None, device: str):
    from hasrd.codecs import load_codec

    return _load(load_codec, spec, device, "model")


def _model_dir(spec: str | None) -> Path:
    """The folder of ``--model`` (the built-in model's without one; a hub id's snapshot folder in
    the local hub cache): where ``entropy.json`` lives."""
    from hasrd.codecs import builtin_model_dir
    from hasrd.hub import is_hub_id, resolve_model_dir

    builtin = builtin_model_dir(spec)
    if builtin is not None:
        return builtin
    if is_hub_id(spec):
        try:
            return resolve_model_dir(spec)
        except FileNotFoundError as exc:
            raise UsageError(_one_line(str(exc))) from None
    return Path(spec)


def _pick_n_q(codec, n_q: int | None, bps: float | None) -> int:
    if bps is not None:
        try:
            return codec.n_q_for_bitrate(bps)
        except ValueError as exc:
            raise UsageError(f"--bitrate {bps:g}: {exc}") from None
    if n_q is None:
        return codec.num_codebooks
    if not 1 <= n_q <= codec.num_codebooks:
        raise UsageError(
            f"--n-q {n_q}: the model has {codec.num_codebooks} codebooks, so n_q must be in 1..{codec.num_codebooks}"
        )
    return n_q


def _chunk_frames(codec, seconds: float) -> int:
    return max(1, int(seconds * codec.sample_rate // codec.hop_length))


# ---------------------------------------------------------------------------------------------
# encoding one audio file (encode, entropy-fit)


def _encode_file(codec, src: Path, n_q: int | None, chunk_frames: int) -> tuple[np.ndarray, dict]:
    """Codes ``[n_q, frames]`` of one audio file, encoded chunk by chunk with bounded memory (a
    continuous codec: its float32 latent ``[latent_dim, frames]``; ``n_q`` is None)."""
    import torch

    from hasrd.io.entry import entry_info, iter_entry_chunks
    from hasrd.io.latentfile import latent_meta
    from hasrd.io.tokenfile import token_meta

    info = entry_info(src)  # a file, or an Entry (a Lhotse cut's span, a dataset row)
    sr, hop = codec.sample_rate, codec.hop_length
    chunk = chunk_frames * hop
    device = next(codec.parameters()).device if any(True for _ in codec.parameters()) else "cpu"
    pieces: list[np.ndarray] = []
    rows, dtype = (codec.latent_dim, torch.float32) if codec.continuous else (n_q, torch.int64)

    def run(x: np.ndarray) -> None:
        wav = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(1, 1, -1).to(device)
        codes = codec.encode_latent(wav) if codec.continuous else codec.encode(wav, n_q)
        want = (1, rows, math.ceil(x.shape[-1] / hop))
        if tuple(codes.shape) != want:
            raise RuntimeError(f"the codec returned codes of shape {tuple(codes.shape)}, expected {want}")
        pieces.append(codes[0].to("cpu", dtype).numpy())

    buf: list[np.ndarray] = []
    held = 0
    # read in pieces of the encode chunk's duration, so that read and encode boundaries coincide
    for block in iter_entry_chunks(src, sr, chunk / sr):
        buf.append(block[0])
        held += block.shape[-1]
        while held >= chunk:
            joined = np.concatenate(buf)
            run(joined[:chunk])
            rest = joined[chunk:]
            buf, held = ([rest] if rest.size else []), rest.size
    if held:
        run(np.concatenate(buf))
    codes = np.concatenate(pieces, axis=1) if pieces else np.zeros((rows, 0), dtype=np.float32 if codec.continuous else np.int64)
    make_meta = latent_meta if codec.continuous else token_meta
    meta = make_meta(codec, info["frames"], info["sample_rate"], info["channels"], chunk_frames=chunk_frames)
    return codes, meta
