"""The ``hasrd`` command: ``encode`` audio to token files, ``decode`` them back, ``info`` on one,
``enhance`` noisy speech in a codec's latent space.
Continuous codecs (``Codec.continuous``) write ``.hsrl`` latent files instead (``encode --continuous``).

Usage is documented in ``docs/cli.md``. The rules every command follows:

* a problem with one input prints one line, ``hasrd: error: <file>: <problem>``, on stderr and
  the batch goes on with the next file; the exit code is 1 if any file failed, 2 for a usage
  error (bad option, unknown model), 0 otherwise;
* outputs are written to a temp name in the target folder and renamed into place, so a failed or
  interrupted run never leaves a partial output behind;
* several processes started by ``accelerate launch`` share a corpus: each takes every
  ``world``-th file of the same sorted list.

Set ``HASRD_DEBUG=1`` to get the full traceback of an unexpected error instead of one line.
"""
from __future__ import annotations

import argparse
import functools
import glob
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from hasrd.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TOKEN_SUFFIX = ".hsrd"
LATENT_SUFFIX = ".hsrl"  # continuous codecs (hasrd.io.latentfile)
MANIFEST_NAME = "manifest.jsonl"
DEFAULT_CHUNK_SECONDS = 30.0
AUDIO_OUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


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

    def __init__(self, total: int, desc: str, show: bool):
        self.bar = None
        if show and total > 1:
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


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    state: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None and self.world > 1:
            self.state.wait_for_everyone()


def _distributed(device: str = "cpu") -> Dist:
    """This process's rank and the number of processes (1 without a launcher).

    Several processes come from ``accelerate launch`` (or ``torchrun``). On the CPU, accelerate
    joins them with the gloo backend only when told the run is a CPU one, so ``cpu`` is passed
    whenever the codec runs on the CPU.
    """
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return Dist()
    use_cpu = device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=use_cpu)
    return Dist(state.process_index, state.num_processes, state)


# ---------------------------------------------------------------------------------------------
# inputs and outputs


@dataclass
class Job:
    src: Path
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


def resolve_jobs(
    inputs: list[str], out: Path, out_is_file: bool, find: Callable[[Path], list[Path]],
    match: Callable[[Path], bool], suffix: str,
) -> list[Job]:
    """Expand files, folders and glob patterns into (input, output) jobs, in a stable order."""
    jobs: list[Job] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
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
    # one output per input: drop exact repeats, refuse two inputs writing the same output
    seen: dict[Path, Job] = {}
    result: list[Job] = []
    for job in jobs:
        if job.out is None:
            result.append(job)
            continue
        key = Path(os.path.abspath(job.out))
        first = seen.get(key)
        if first is None:
            seen[key] = job
            result.append(job)
        elif Path(os.path.abspath(first.src)) != Path(os.path.abspath(job.src)):
            result.append(Job(job.src, None, error=f"output {job.out} is also the output of {first.src}; rename one"))
    return result


def _my_jobs(jobs: list[Job], dist: Dist, out_root: Path, out_is_file: bool, verb: str):
    """This process's share of ``jobs`` and its :class:`Reporter`, or None (after one error line
    from the main process) when the output folder cannot be created or written."""
    mine = jobs[dist.rank::dist.world]
    report = Reporter(len(mine), verb, show=dist.main)
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


def _output_mode(inputs: list[str], out: Path, file_suffixes: Iterable[str] | None) -> bool:
    """Whether ``-o`` names one output file (True) or a folder (False).

    A folder: an existing folder, a name ending in ``/``, a name without a suffix, or any ``-o``
    with several inputs, a folder input or a glob. Otherwise (one input file, ``-o name.ext``)
    a file; for ``decode`` its suffix picks the audio format and must be a supported one.
    """
    one_file = len(inputs) == 1 and not Path(inputs[0]).is_dir() and (
        Path(inputs[0]).exists() or not glob.has_magic(inputs[0])
    )
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
# encode


def _encode_file(codec, src: Path, n_q: int | None, chunk_frames: int) -> tuple[np.ndarray, dict]:
    """Codes ``[n_q, frames]`` of one audio file, encoded chunk by chunk with bounded memory (a
    continuous codec: its float32 latent ``[latent_dim, frames]``; ``n_q`` is None)."""
    import torch

    from hasrd.io.audio import audio_info, iter_audio_chunks
    from hasrd.io.latentfile import latent_meta
    from hasrd.io.tokenfile import token_meta

    info = audio_info(src)
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
    for block in iter_audio_chunks(src, sr, chunk / sr):
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


def _token_record(out: Path, root: Path, src: Path, meta: dict, size: int) -> dict:
    return {
        "path": out.relative_to(root).as_posix(),
        "source": str(src),
        "frames": meta["num_frames"],
        "duration": round(meta["duration"], 6),
        "bytes": size,
        **({"latent_dim": meta["latent_dim"]} if "latent_dim" in meta else {"n_q": meta["n_q"]}),
    }


def _check_encode_kind(codec, args: argparse.Namespace) -> None:
    """``--continuous`` must match the model's kind (the one place encode branches on it)."""
    name = args.model or "default"
    if args.continuous and not codec.continuous:
        raise UsageError(f"--continuous: the model {name} is a token codec ({codec.codec_name}); "
                         "drop --continuous to write .hsrd token files")
    if codec.continuous and not args.continuous:
        raise UsageError(f"the model {name} is a continuous codec ({codec.codec_name}): "
                         "pass --continuous to write .hsrl latent files")
    if codec.continuous and (args.n_q is not None or args.bitrate is not None):
        option = "--n-q" if args.n_q is not None else "--bitrate"
        raise UsageError(f"{option}: a continuous codec has no codebooks; its rate is fixed "
                         f"({codec.latent_bitrate(16):g} bits/s as float16)")


def cmd_encode(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.audio import AUDIO_EXTENSIONS, find_audio_files
    from hasrd.io.latentfile import LatentFileError, load_latent, save_latent
    from hasrd.io.tokenfile import TokenFileError, load_tokens, save_tokens

    if args.chunk_seconds <= 0:
        raise UsageError(f"--chunk-seconds {args.chunk_seconds:g}: must be positive")
    out_root = Path(args.output)
    suffix = LATENT_SUFFIX if args.continuous else TOKEN_SUFFIX
    if not args.continuous and out_root.suffix.lower() == LATENT_SUFFIX:
        raise UsageError(f"{out_root}: .hsrl latent files need --continuous (and a continuous model)")
    out_is_file = _output_mode(args.inputs, out_root, (suffix,))
    dist = _distributed(args.device)
    if dist.world > 1:
        torch.set_num_threads(1)
    codec = _load_model(args.model, _device(args.device, dist))
    _check_encode_kind(codec, args)
    n_q = None if codec.continuous else _pick_n_q(codec, args.n_q, args.bitrate)
    load_output, save_output = (load_latent, save_latent) if codec.continuous else (load_tokens, save_tokens)
    entropy = _encode_entropy(args, codec)  # the model's entropy tables with --entropy, else None
    if not codec.continuous:  # existing outputs may be entropy-coded: read them with the model's tables
        load_output = functools.partial(load_tokens, tables=entropy or _model_dir(args.model))
        save_output = functools.partial(save_tokens, entropy=entropy)
    coding = _ENTROPY_CODING if entropy is not None else None
    chunk_frames = _chunk_frames(codec, args.chunk_seconds)
    fingerprint = codec.fingerprint()

    jobs = resolve_jobs(
        args.inputs, out_root, out_is_file, find_audio_files,
        lambda p: p.suffix.lower() in AUDIO_EXTENSIONS, suffix,
    )
    started = _my_jobs(jobs, dist, out_root, out_is_file, "encode")
    if started is None:
        return EXIT_FAILED
    mine, report = started
    part = None if out_is_file else out_root / f"{MANIFEST_NAME}.part{dist.rank}"
    if part is not None and part.exists():
        part.unlink()  # a leftover of an interrupted run: this run redoes its records

    def work(job: Job) -> bool:
        out = job.out
        record_meta = None
        if out.exists() and not args.force:
            if not job.resumable:
                raise JobError(f"output {out} exists (use --force to overwrite it)")
            try:
                _, record_meta = load_output(out)
            except (TokenFileError, LatentFileError, OSError):
                record_meta = None  # a broken leftover: encode again
            if record_meta is not None and (
                record_meta["fingerprint"] != fingerprint or record_meta.get("n_q") != n_q
                or record_meta.get("payload_coding") != coding
            ):
                setting = f"n_q={record_meta['n_q']}" if "n_q" in record_meta else "a latent"
                if record_meta.get("payload_coding") != coding:
                    setting += ", " + ("entropy-coded" if record_meta.get("payload_coding") else "bit-packed")
                raise JobError(
                    f"output {out} exists with other settings (model {record_meta['fingerprint']}, "
                    f"{setting}); use --force to overwrite it"
                )
        if record_meta is None:
            codes, meta = _encode_file(codec, job.src, n_q, chunk_frames)
            _make_parent(out)
            try:
                size = save_output(out, codes, meta)
            except OSError as exc:
                raise JobError(f"cannot write {out}: {exc.strerror or exc}") from None
            record_meta = {"num_frames": codes.shape[1], "duration": meta["length"] / meta["orig_sample_rate"],
                           **({"latent_dim": codes.shape[0]} if codec.continuous else {"n_q": n_q})}
            wrote = True
        else:
            size = out.stat().st_size
            wrote = False
        if part is not None:
            with open(part, "a", encoding="utf-8") as fh:  # appended as we go; merged at the end
                fh.write(json.dumps(_token_record(out, out_root, job.src, record_meta, size)) + "\n")
        return wrote

    done, skipped = _run_jobs(mine, report, work)
    dist.barrier()
    if part is not None and dist.main and (
        (out_root / MANIFEST_NAME).exists() or any(out_root.glob(f"{MANIFEST_NAME}.part*"))
    ):
        try:
            _merge_manifest(out_root, dist.world)
        except OSError as exc:
            report.error(f"{out_root / MANIFEST_NAME}: cannot write the manifest: {exc.strerror or exc}")
    _summary("encoded", done, skipped, report.failed, dist)
    return EXIT_FAILED if report.failed else EXIT_OK


def _merge_manifest(root: Path, world: int) -> None:
    """Fold the ranks' parts into ``manifest.jsonl`` (kept entries: earlier runs, still on disk)."""
    from hasrd.io.tokenfile import atomic_write_bytes

    entries: dict[str, dict] = {}
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                if isinstance(rec, dict) and isinstance(rec.get("path"), str) and (root / rec["path"]).is_file():
                    entries[rec["path"]] = rec
            except ValueError:
                continue
    current = {f"{MANIFEST_NAME}.part{r}" for r in range(world)}
    # leftovers of an interrupted run first, this run's parts last: the newest record of a path wins
    parts = sorted(root.glob(f"{MANIFEST_NAME}.part*"), key=lambda p: (p.name in current, p.name))
    for part in parts:
        for line in part.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("path"), str) and (root / rec["path"]).is_file():
                entries[rec["path"]] = rec
    text = "".join(json.dumps(entries[k]) + "\n" for k in sorted(entries))
    atomic_write_bytes(manifest, text.encode("utf-8"))
    for part in parts:
        part.unlink(missing_ok=True)


def _summary(verb: str, done: int, skipped: int, failed: int, dist: Dist) -> None:
    who = f"[rank {dist.rank}/{dist.world}] " if dist.world > 1 else ""
    text = f"{who}{verb} {done} file(s)"
    if skipped:
        text += f", skipped {skipped} already done"
    if failed:
        text += f", {failed} failed"
    print(text, flush=True)


def _device(name: str, dist: Dist) -> str:
    if name == "auto":
        return str(dist.state.device) if dist.state is not None else "cpu"
    return name


# ---------------------------------------------------------------------------------------------
# decode


def _check_model(codec, meta: dict, ignore_mismatch: bool) -> None:
    name, fp = codec.codec_name, codec.fingerprint()
    if (meta["codec"] != name or meta["fingerprint"] != fp) and not ignore_mismatch:
        raise JobError(
            f"made by another model ({meta['codec']} {meta['fingerprint']}) than this one ({name} {fp}); "
            "pass that model with --model, or --ignore-model-mismatch to decode anyway"
        )
    if codec.continuous:  # a latent file (_load_codes refused the other kind); a forced decode needs its shape
        if meta["latent_dim"] != codec.latent_dim:
            raise JobError(f"holds a latent of {meta['latent_dim']} channels, the model's has {codec.latent_dim}")
        if meta["sample_rate"] != codec.sample_rate or abs(meta["frame_rate"] - codec.frame_rate) > 1e-6:
            raise JobError(
                f"a latent at {meta['frame_rate']:g} frames/s of {meta['sample_rate']} Hz audio cannot be decoded by a "
                f"model at {codec.frame_rate:g} frames/s of {codec.sample_rate} Hz"
            )
        return
    # even a forced decode needs codes this model can read
    if meta["n_q"] > codec.num_codebooks:
        raise JobError(f"has {meta['n_q']} codebooks, the model only {codec.num_codebooks}")
    for i, (k_file, k_model) in enumerate(zip(meta["codebook_sizes"], codec.codebook_sizes)):
        if k_file > k_model:
            raise JobError(f"codebook {i} has {k_file} entries, the model's only {k_model}")
    if meta["sample_rate"] != codec.sample_rate or abs(meta["frame_rate"] - codec.frame_rate) > 1e-6:
        raise JobError(
            f"codes at {meta['frame_rate']:g} frames/s of {meta['sample_rate']} Hz audio cannot be decoded by a model "
            f"at {codec.frame_rate:g} frames/s of {codec.sample_rate} Hz"
        )


def _load_codes(codec, path: Path, tables: Any = None) -> tuple[np.ndarray, dict]:
    """The token codes or the latent of ``path``, whichever kind the model decodes (the kind is
    read from the file's first bytes, else its suffix); a file of the other kind is refused."""
    from hasrd.io.latentfile import file_kind, load_latent
    from hasrd.io.tokenfile import load_tokens

    kind = file_kind(path)
    if kind == "latent" and not codec.continuous:
        raise JobError(f"is a .hsrl latent file (continuous codec); this model ({codec.codec_name} "
                       f"{codec.fingerprint()}) decodes .hsrd token files; pass the continuous model with --model")
    if kind == "tokens" and codec.continuous:
        raise JobError(f"is a .hsrd token file; this model ({codec.codec_name} {codec.fingerprint()}) is a "
                       "continuous codec that decodes .hsrl latent files; pass the token model with --model")
    return load_latent(path) if kind == "latent" else load_tokens(path, tables)


def _target_length(meta: dict, out_sr: int) -> int:
    if out_sr == meta["orig_sample_rate"]:
        return meta["length"]
    return int(round(meta["length"] * out_sr / meta["orig_sample_rate"]))


def _decode_to_file(codec, codes: np.ndarray, meta: dict, out: Path, out_sr: int, chunk_frames: int) -> int:
    """Decode chunk by chunk straight into ``out`` (via a temp file); returns samples written."""
    import soundfile as sf
    import soxr
    import torch

    from hasrd.io.atomic import temp_path

    fmt, subtype = AUDIO_OUT_FORMATS.get(out.suffix.lower(), AUDIO_OUT_FORMATS[".wav"])
    target = _target_length(meta, out_sr)
    frames = codes.shape[1]
    hop = codec.hop_length
    device = next(codec.parameters()).device if any(True for _ in codec.parameters()) else "cpu"
    stream = None if out_sr == codec.sample_rate else soxr.ResampleStream(
        codec.sample_rate, out_sr, 1, dtype="float32", quality="HQ"
    )
    written = 0
    with temp_path(out) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=out_sr, channels=1, format=fmt, subtype=subtype) as fh:
            for start in range(0, frames, chunk_frames):
                block = torch.from_numpy(codes[:, start:start + chunk_frames]).unsqueeze(0).to(device)
                wav = codec.decode_latent(block.float()) if codec.continuous else codec.decode(block)
                if tuple(wav.shape) != (1, 1, block.shape[-1] * hop):
                    raise RuntimeError(f"the codec decoded {tuple(wav.shape)} samples for {block.shape[-1]} frames")
                y = wav[0, 0].to("cpu", torch.float32).numpy()
                if stream is not None:
                    y = stream.resample_chunk(y, last=start + chunk_frames >= frames)
                y = y[: max(0, target - written)]
                if y.size:
                    fh.write(np.clip(y, -1.0, 1.0))
                    written += y.size
            if written < target:  # the last frame never falls short by more than rounding
                fh.write(np.zeros(target - written, dtype=np.float32))
                written = target
    return written


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.audio import audio_info
    from hasrd.io.tokenfile import MAX_SAMPLE_RATE

    if args.sample_rate is not None and not 1 <= args.sample_rate <= MAX_SAMPLE_RATE:
        raise UsageError(f"--sample-rate {args.sample_rate}: must be in 1..{MAX_SAMPLE_RATE}")
    if args.chunk_seconds <= 0:
        raise UsageError(f"--chunk-seconds {args.chunk_seconds:g}: must be positive")
    out_root = Path(args.output)
    out_is_file = _output_mode(args.inputs, out_root, AUDIO_OUT_FORMATS)
    dist = _distributed(args.device)
    if dist.world > 1:
        torch.set_num_threads(1)
    codec = _load_model(args.model, _device(args.device, dist))
    default_chunk = _chunk_frames(codec, args.chunk_seconds)

    suffix = LATENT_SUFFIX if codec.continuous else TOKEN_SUFFIX  # what folders and globs pick up

    def find(root: Path) -> list[Path]:
        return sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())

    jobs = resolve_jobs(args.inputs, out_root, out_is_file, find, lambda p: p.suffix == suffix, ".wav")
    started = _my_jobs(jobs, dist, out_root, out_is_file, "decode")
    if started is None:
        return EXIT_FAILED
    mine, report = started

    def work(job: Job) -> bool:
        codes, meta = _load_codes(codec, job.src, _model_dir(args.model))  # entropy.json, if used
        _check_model(codec, meta, args.ignore_model_mismatch)
        out_sr = args.sample_rate or meta["orig_sample_rate"]
        out = job.out
        if out.exists() and not args.force:
            if not job.resumable:
                raise JobError(f"output {out} exists (use --force to overwrite it)")
            try:
                have = audio_info(out)
            except ValueError:
                have = None  # a broken leftover: decode again
            if have is not None:
                if have["sample_rate"] == out_sr and have["frames"] == _target_length(meta, out_sr):
                    return False
                raise JobError(f"output {out} exists with another length or sample rate; use --force to overwrite it")
        _make_parent(out)
        try:
            _decode_to_file(codec, codes, meta, out, out_sr, meta.get("chunk_frames") or default_chunk)
        except OSError as exc:
            raise JobError(f"cannot write {out}: {exc.strerror or exc}") from None
        return True

    done, skipped = _run_jobs(mine, report, work)
    _summary("decoded", done, skipped, report.failed, dist)
    return EXIT_FAILED if report.failed else EXIT_OK


# ---------------------------------------------------------------------------------------------
# enhance


def _load_enhancer(spec: str, device: str):
    from hasrd.enhance import load_enhancer

    return _load(load_enhancer, spec, device, "enhancer")


def _enhance_file(enh, src: Path, out: Path) -> None:
    """Enhance every channel of ``src`` and write ``out`` at the input's sample rate (atomically)."""
    import torch

    from hasrd.io.audio import load_audio, resample, save_audio

    audio, sr = load_audio(src, mono=False)
    if audio.shape[-1] == 0:
        raise JobError("empty audio")
    x = resample(audio, sr, enh.sample_rate) if sr != enh.sample_rate else audio
    device = next(enh.parameters()).device
    y = enh.enhance(torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1).to(device))[:, 0].cpu().numpy()
    y = resample(y, enh.sample_rate, sr)[:, : audio.shape[-1]]
    if y.shape[-1] < audio.shape[-1]:
        y = np.pad(y, ((0, 0), (0, audio.shape[-1] - y.shape[-1])))
    save_audio(out, y, sr, subtype=AUDIO_OUT_FORMATS.get(out.suffix.lower(), AUDIO_OUT_FORMATS[".wav"])[1])


def cmd_enhance(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.audio import AUDIO_EXTENSIONS, find_audio_files

    out_root = Path(args.output)
    out_is_file = _output_mode(args.inputs, out_root, AUDIO_OUT_FORMATS)
    dist = _distributed(args.device)
    if dist.world > 1:
        torch.set_num_threads(1)
    enh = _load_enhancer(args.model, _device(args.device, dist))
    jobs = resolve_jobs(args.inputs, out_root, out_is_file, find_audio_files,
                        lambda p: p.suffix.lower() in AUDIO_EXTENSIONS, ".wav")
    started = _my_jobs(jobs, dist, out_root, out_is_file, "enhance")
    if started is None:
        return EXIT_FAILED
    mine, report = started

    def work(job: Job) -> bool:
        if job.out.exists() and not args.force:
            if job.resumable:  # a folder run that was interrupted: keep what is done
                return False
            raise JobError(f"output {job.out} exists (use --force to overwrite it)")
        if Path(os.path.abspath(job.out)) == Path(os.path.abspath(job.src)):
            raise JobError("the output would overwrite the input")
        _make_parent(job.out)
        _enhance_file(enh, job.src, job.out)
        return True

    done, skipped = _run_jobs(mine, report, work)
    _summary("enhanced", done, skipped, report.failed, dist)
    return EXIT_FAILED if report.failed else EXIT_OK


# ---------------------------------------------------------------------------------------------
# info


def _latent_info(path: Path) -> int:
    """``hasrd info`` of a ``.hsrl`` latent file: its metadata, nominal (float16) and actual bitrate."""
    from hasrd.io.latentfile import load_latent

    try:
        _, meta = load_latent(path)
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header_bytes = int.from_bytes(fh.read(8), "little")
    except Exception as exc:
        if _debug():
            raise
        print(f"hasrd: error: {_problem(exc, path)}", file=sys.stderr)
        return EXIT_FAILED
    duration = meta.pop("duration")
    meta.pop("crc32", None)
    report = {"file": str(path), "bytes": size, "header_bytes": header_bytes, **meta, "duration": duration}
    report["nominal_bitrate"] = meta["frame_rate"] * meta["latent_dim"] * 16
    report["actual_bitrate"] = size * 8 / duration if duration > 0 else None
    print(json.dumps(report, indent=2))
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from hasrd.io.latentfile import file_kind
    from hasrd.io.tokenfile import OVERHEAD_BYTES, PREFIX_BYTES

    path = Path(args.file)
    if file_kind(path) == "latent":
        return _latent_info(path)
    try:
        from hasrd.io.tokenfile import check_tokens

        # an entropy-coded file is decoded (codes checked) with --model's tables, else its header,
        # size and checksum are checked
        meta = check_tokens(path, _model_dir(args.model) if getattr(args, "model", None) else None)
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header_bytes = int.from_bytes(fh.read(PREFIX_BYTES)[5:7], "little")
    except Exception as exc:
        if _debug():
            raise
        print(f"hasrd: error: {_problem(exc, path)}", file=sys.stderr)
        return EXIT_FAILED
    from hasrd.codecs.base import bitrate

    duration = meta["duration"]
    report = {"file": str(path), "bytes": size, "header_bytes": header_bytes, "overhead_bytes": OVERHEAD_BYTES}
    report.update(meta)
    report["nominal_bitrate"] = bitrate(meta["frame_rate"], meta["codebook_sizes"], meta["n_q"])
    report["actual_bitrate"] = size * 8 / duration if duration > 0 else None
    report.update(_payload_report(meta, size, header_bytes, OVERHEAD_BYTES, bool(getattr(args, "model", None))))
    print(json.dumps(report, indent=2))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from hasrd.eval import main as eval_main

    return eval_main(args.rest, prog="hasrd eval")


def cmd_demo(args: argparse.Namespace) -> int:
    """encode -> token files -> decode -> wav, then the evaluator on the same model and speech."""
    from hasrd.eval.data import DEFAULT_EVAL_DIR
    from hasrd.io.tokenfile import load_tokens

    out = Path(args.output)
    data = Path(args.data) if args.data else DEFAULT_EVAL_DIR
    codec = _load_model(args.model, "cpu")
    if codec.continuous:
        raise UsageError(f"the model {args.model or 'default'} is a continuous codec: the demo compares codebook "
                         "counts; use hasrd encode --continuous, hasrd decode and evaluate.py --model")
    n_all = codec.num_codebooks
    if args.n_q:
        try:
            n_qs = sorted({int(v) for v in args.n_q.split(",")})
        except ValueError:
            raise UsageError(f"--n-q takes comma-separated integers, got {args.n_q!r}") from None
    else:
        n_qs = sorted({n for n in (1, 2, 3, n_all) if n <= n_all})
    model_args = ["--model", args.model] if args.model else []
    force = ["--force"] if args.force else []
    print(f"hasrd demo: {codec.codec_name} codec, {codec.frame_rate:g} Hz frames, {n_all} codebooks; speech from {data}")
    for n in n_qs:
        tok, wav = out / "tokens" / f"nq{n}", out / "decoded" / f"nq{n}"
        code = main(["encode", str(data), "-o", str(tok), "--n-q", str(n), *model_args, *force])
        if code == EXIT_OK:
            code = main(["decode", str(tok), "-o", str(wav), *model_args, *force])
        if code != EXIT_OK:
            return code
        files = sorted(tok.rglob("*.hsrd"))
        size = sum(f.stat().st_size for f in files)
        seconds = sum(load_tokens(f)[1]["duration"] for f in files)
        print(f"  n_q={n}: {len(files)} token files, nominal {codec.bitrate(n) / 1000:.2f} kbps, "
              f"actual {size * 8 / max(seconds, 1e-9) / 1000:.2f} kbps -> {wav}")
    from hasrd.eval import main as eval_main

    ev = ["--model", args.model or "default", "--data", str(data), "--n-q", ",".join(map(str, n_qs)),
          "--output", str(out / "eval")]
    if args.baselines and args.baselines != "none":
        ev += ["--baselines", args.baselines]
    code = eval_main(ev, prog="hasrd demo")
    if code == EXIT_OK:
        print(f"hasrd demo: token files in {out / 'tokens'}, wavs in {out / 'decoded'}, table and plot in {out / 'eval'}")
    return code


# ---------------------------------------------------------------------------------------------
# entropy-coded token files (hasrd.io.entropy) and ONNX export (hasrd.export)

_ENTROPY_CODING = "range1"  # = hasrd.io.entropy.CODING (not imported here: keeps the CLI start fast)


def _model_dir(spec: str | None) -> Path:
    """The folder of ``--model`` (the built-in model's without one): where ``entropy.json`` lives."""
    from hasrd.codecs import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR if spec is None or str(spec) == "default" else Path(spec)


def _encode_entropy(args: argparse.Namespace, codec):
    """The model's entropy tables for ``encode --entropy`` (UsageError if it has none), else None."""
    if not getattr(args, "entropy", False):
        return None
    from hasrd.io.entropy import TABLES_NAME, resolve_tables
    from hasrd.io.tokenfile import TokenFileError

    if codec.continuous:
        raise UsageError("--entropy: a continuous codec writes latent files, which have no entropy coding")
    where = _model_dir(args.model)
    try:
        tables = resolve_tables(where)
    except TokenFileError as exc:
        raise UsageError(f"--entropy: {exc}") from None
    if tables.fingerprint != codec.fingerprint() or tables.codebook_sizes != list(codec.codebook_sizes):
        raise UsageError(
            f"--entropy: {where / TABLES_NAME} was fitted for model {tables.codec} {tables.fingerprint}, not this one "
            f"({codec.codec_name} {codec.fingerprint()}); fit it again with hasrd entropy-fit"
        )
    return tables


def _payload_report(meta: dict, size: int, header_bytes: int, overhead: int, decoded: bool) -> dict:
    """``hasrd info``'s payload fields: coding, payload size and bitrate (codes only, no header),
    and whether the codes were decoded and checked (always for bit-packed files; for entropy-coded
    ones only with ``--model``)."""
    payload = size - header_bytes - overhead
    duration = meta["duration"]
    return {"payload_coding": meta.get("payload_coding", "bits"), "payload_bytes": payload,
            "payload_bitrate": payload * 8 / duration if duration > 0 else None,
            "codes_verified": decoded or not meta.get("payload_coding")}


def _fit_inputs(inputs: list[str]) -> list[tuple[Path, str | None]]:
    """Token files and audio files named by ``inputs`` (files, folders, quoted globs), sorted, unique."""
    from hasrd.io.audio import AUDIO_EXTENSIONS, find_audio_files

    def usable(p: Path) -> bool:
        return p.suffix == TOKEN_SUFFIX or p.suffix.lower() in AUDIO_EXTENSIONS

    def in_folder(root: Path) -> list[Path]:
        return sorted(set(find_audio_files(root)) | {p for p in root.rglob(f"*{TOKEN_SUFFIX}") if p.is_file()})

    found: list[tuple[Path, str | None]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = in_folder(path)
            found += [(f, None) for f in files] or [(path, "no audio or token files found in this folder")]
        elif path.exists():
            found.append((path, None))
        elif glob.has_magic(text):
            files = []
            for hit in sorted(glob.glob(text, recursive=True)):
                hit = Path(hit)
                files += in_folder(hit) if hit.is_dir() else ([hit] if usable(hit) else [])
            found += [(f, None) for f in sorted(set(files))] or [(path, "no files match this pattern")]
        else:
            found.append((path, "no such file or directory"))
    seen, unique = set(), []
    for item in found:
        key = (os.path.abspath(item[0]), item[1])
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def cmd_entropy_fit(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.entropy import TABLES_NAME, fit_tables
    from hasrd.io.tokenfile import load_tokens

    if not (math.isfinite(args.smoothing) and 0 < args.smoothing <= 1e6):
        raise UsageError(f"--smoothing {args.smoothing:g}: must be a positive number")
    out = Path(args.output)
    target = out if out.suffix.lower() == ".json" else out / TABLES_NAME
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists (use --force to replace it)")
    codec = _load_model(args.model, "cpu")
    if codec.continuous:
        raise UsageError(f"the model {args.model or 'default'} is a continuous codec: it has no codes to entropy-code")
    fingerprint, N = codec.fingerprint(), codec.num_codebooks
    chunk_frames = _chunk_frames(codec, DEFAULT_CHUNK_SECONDS)
    inputs = _fit_inputs(args.inputs)
    report = Reporter(len(inputs), "entropy-fit", show=True)
    arrays: list[np.ndarray] = []
    with torch.inference_mode():
        for src, problem in inputs:
            try:
                if problem:
                    raise JobError(problem)
                if src.suffix == TOKEN_SUFFIX:
                    codes, meta = load_tokens(src, _model_dir(args.model))
                    if meta["codec"] != codec.codec_name or meta["fingerprint"] != fingerprint:
                        raise JobError(f"made by another model ({meta['codec']} {meta['fingerprint']}) than this one "
                                       f"({codec.codec_name} {fingerprint})")
                else:
                    codes, _ = _encode_file(codec, src, N, chunk_frames)
                arrays.append(codes)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                if _debug():
                    raise
                report.error(_problem(exc, src))
            report.step()
    report.close()
    if report.failed:
        print(f"entropy-fit: {report.failed} input(s) failed; no tables written", flush=True)
        return EXIT_FAILED
    if not any(a.shape[1] for a in arrays):
        print(f"hasrd: error: {', '.join(args.inputs)}: no frames to fit the tables on", file=sys.stderr)
        return EXIT_FAILED
    tables = fit_tables(arrays, codec, smoothing=args.smoothing, repeat=False if args.no_repeat else "auto")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tables.save(target)
    except OSError as exc:
        print(f"hasrd: error: {target}: cannot write the tables: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    nominal = [math.log2(k) for k in codec.codebook_sizes]
    print(f"fitted entropy tables {tables.digest} on {tables.info['files']} file(s), {tables.info['frames']} frames "
          f"-> {target}")
    for i, bits in enumerate(tables.info["bits_per_code"]):
        flag = ", repeat flag" if tables.repeat[i] is not None else ""
        print(f"  codebook {i + 1}: {bits:.3f} bits/code on the fitting data (nominal {nominal[i]:.3f}){flag}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from hasrd.export import DEFAULT_OPSET, ExportError, export_onnx

    opset = DEFAULT_OPSET if args.opset is None else args.opset
    if not 11 <= opset <= 23:
        raise UsageError(f"--opset {opset}: must be in 11..23")
    if args.exporter == "dynamo" and opset < 18:
        raise UsageError(f"--opset {opset}: the dynamo exporter needs 18 or more")
    codec = _load_model(args.model, "cpu")
    if codec.continuous:
        raise UsageError(f"the model {args.model or 'default'} is a continuous codec: the ONNX export covers codebook codecs")
    n_q = _pick_n_q(codec, args.n_q, None)
    out = Path(args.output)
    try:
        paths = export_onnx(codec, out, n_q=n_q, opset=opset, exporter=args.exporter, overwrite=args.force)
        check = json.loads(paths["manifest"].read_text())["check"]
    except ExportError as exc:
        if _debug():
            raise
        print(f"hasrd: error: {_one_line(f'{out}: {exc}')}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"hasrd: error: {_one_line(f'{out}: {exc.strerror or exc}')}", file=sys.stderr)
        return EXIT_FAILED
    ties = check["codes_different_at_near_ties"]
    print(f"exported {codec.codec_name} {codec.fingerprint()} (encoder n_q={n_q}, decoder n_q 1..{codec.num_codebooks}, "
          f"opset {opset}) -> {paths['encoder']}, {paths['decoder']}, {paths['manifest']}")
    print(f"  check: {check['codes_checked']} codes " + ("identical" if not ties else f"identical but {ties} at near ties")
          + f", decoded audio within {check['decoder_max_abs_diff']:.2g} of torch")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# the parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other hasrd error, plus the usage hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"hasrd: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hasrd",
        description="Tokenize speech with a hasrd codec and decode it back.",
        epilog="Exit codes: 0 all done, 1 some inputs failed, 2 usage error. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"hasrd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    model_help = "model folder written by save_pretrained (default: the built-in model)"
    enc = sub.add_parser("encode", help="audio files or folders -> .hsrd token files",
                         description="Encode audio (any rate, mono or stereo, wav/flac/ogg) into .hsrd token files.")
    enc.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (searched recursively) or quoted glob patterns")
    enc.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="output folder (the input tree is mirrored under it), or a file name for a single input")
    enc.add_argument("--model", default=None, metavar="DIR", help=model_help)
    rate = enc.add_mutually_exclusive_group()
    rate.add_argument("--n-q", type=int, default=None, metavar="N", help="number of codebooks to keep (default: all)")
    rate.add_argument("--bitrate", type=float, default=None, metavar="BPS",
                      help="keep the most codebooks whose nominal bitrate is at most BPS bits/s")
    enc.add_argument("--continuous", action="store_true",
                     help="the model is a continuous codec: write .hsrl latent files (float16) instead of .hsrd tokens")
    enc.add_argument("--force", action="store_true", help="overwrite existing outputs")
    enc.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS, metavar="S",
                     help=f"encode long files in independent chunks of about S seconds (default {DEFAULT_CHUNK_SECONDS:g})")
    enc.add_argument("--device", default="cpu", help="torch device, or 'auto' for the one accelerate assigns (default cpu)")
    enc.set_defaults(func=cmd_encode)

    dec = sub.add_parser("decode", help=".hsrd token files or folders -> audio",
                         description="Decode .hsrd token files back to audio at the original length.")
    dec.add_argument("inputs", nargs="+", metavar="INPUT",
                     help=".hsrd token files (.hsrl latent files for a continuous model), folders (searched recursively) or quoted glob patterns")
    dec.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="output folder, or a .wav/.flac/.ogg file name for a single input")
    dec.add_argument("--model", default=None, metavar="DIR", help=model_help)
    dec.add_argument("--sample-rate", type=int, default=None, metavar="SR",
                     help="output sample rate (default: the original file's)")
    dec.add_argument("--ignore-model-mismatch", action="store_true",
                     help="decode token files made by another model (fingerprint differs)")
    dec.add_argument("--force", action="store_true", help="overwrite existing outputs")
    dec.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS, metavar="S",
                     help="decode chunk for files that do not record the encoder's chunk")
    dec.add_argument("--device", default="cpu", help="torch device, or 'auto' (default cpu)")
    dec.set_defaults(func=cmd_decode)

    ev = sub.add_parser("eval", help="bitrate vs WER, MOS and fidelity against other codecs (= evaluate.py)",
                        add_help=False)
    ev.add_argument("rest", nargs=argparse.REMAINDER)
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="the main job: encode the shipped speech, decode it, measure it, plot it",
                          description="Encode the shipped sample speech to token files at several bitrates, decode "
                          "them to wav, and report bitrate and quality (STOI, PESQ, DNSMOS, WER) beside codec2 "
                          "and opus, with a rate-quality plot.")
    demo.add_argument("-o", "--output", default="out/demo", metavar="OUT", help="output folder (default out/demo)")
    demo.add_argument("--model", default=None, metavar="DIR", help=model_help)
    demo.add_argument("--n-q", default=None, metavar="LIST",
                      help="codebook counts, comma-separated (default: 1, 2, 3 and all)")
    demo.add_argument("--baselines", default="codec2:3200,opus:6000", metavar="LIST",
                      help="baselines for the same table (default codec2:3200,opus:6000; 'none' for none)")
    demo.add_argument("--data", default=None, metavar="DIR", help="speech to use (default: the shipped evaluation set)")
    demo.add_argument("--force", action="store_true", help="redo token files and wavs that exist")
    demo.set_defaults(func=cmd_demo)

    inf = sub.add_parser("info", help="print a token file's header as JSON",
                         description="Print the header of a .hsrd (or .hsrl latent) file with its nominal and actual bitrate.")
    inf.add_argument("file", metavar="FILE")
    inf.set_defaults(func=cmd_info)

    # entropy-coded token files and ONNX export
    enc.add_argument("--entropy", action="store_true",
                     help="write entropy-coded token files (format version 2) with the model's entropy.json "
                     "(made by hasrd entropy-fit); hasrd decode reads them with the same model")
    inf.add_argument("--model", default=None, metavar="DIR",
                     help="decode an entropy-coded file fully with this model's entropy tables "
                     "(default: check its header, size and checksum)")
    fit = sub.add_parser("entropy-fit", help="fit a model's entropy tables (for encode --entropy)",
                         description="Fit static per-codebook frequency tables on the codes of a corpus (audio "
                         "files, encoded with the model, or its .hsrd token files) and write them as entropy.json.")
    fit.add_argument("inputs", nargs="+", metavar="INPUT", help="audio or .hsrd files, folders (searched recursively) or quoted globs")
    fit.add_argument("--model", default=None, metavar="DIR", help=model_help)
    fit.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="model folder (writes OUT/entropy.json, where encode/decode --model look) or a .json file")
    fit.add_argument("--smoothing", type=float, default=0.5, metavar="A",
                     help="pseudo-count added to every code, so any code stays encodable (default 0.5)")
    fit.add_argument("--no-repeat", action="store_true", help="never code repeated codes with a repeat flag")
    fit.add_argument("--force", action="store_true", help="replace an existing table file")
    fit.set_defaults(func=cmd_entropy_fit)
    exp = sub.add_parser("export", help="export the model's encoder and decoder to ONNX",
                         description="Write OUT/encoder.onnx (wav -> codes), OUT/decoder.onnx (codes -> wav) and "
                         "OUT/export.json, checked with onnxruntime against the torch model (docs/export.md).")
    exp.add_argument("--model", default=None, metavar="DIR", help=model_help)
    exp.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    exp.add_argument("--n-q", type=int, default=None, metavar="N",
                     help="codebooks the exported encoder outputs (default: all); the decoder takes any number")
    exp.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    exp.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 18)")
    exp.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript",
                     help="torch's tracing exporter (default, fast) or the torch.export-based one")
    exp.add_argument("--force", action="store_true", help="replace existing files in OUT")
    exp.set_defaults(func=cmd_export)

    enh = sub.add_parser("enhance", help="noisy speech -> enhanced speech, in a codec's latent space",
                         description="Enhance noisy speech with an enhancer trained by train.py (task: enhance): "
                         "the codec encodes the noisy audio, a Conformer maps its latent or tokens to clean ones, "
                         "the codec decodes them. Output: same length, channels and sample rate as the input (docs/enhancement.md).")
    enh.add_argument("inputs", nargs="+", metavar="IN", help="audio files, folders (searched recursively) or quoted glob patterns")
    enh.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="output folder (the input tree is mirrored under it), or a .wav/.flac/.ogg file for a single input")
    enh.add_argument("--model", required=True, metavar="DIR", help="enhancer folder (a training run's export/)")
    enh.add_argument("--force", action="store_true", help="overwrite existing outputs")
    enh.add_argument("--device", default="cpu", help="torch device, or 'auto' (default cpu)")
    enh.set_defaults(func=cmd_enhance)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            # library deprecation notices are not the user's business on a one-line-error CLI
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return args.func(args)
    except UsageError as exc:
        print(f"hasrd: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hasrd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
