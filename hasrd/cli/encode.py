"""``hasrd encode``: audio files, folders, globs or corpora (Lhotse manifests, ``hf-dataset:``
specs) -> ``.hsrd`` token files (``.hsrl`` latent files for a continuous codec, bit-packed or, with
``--entropy``, entropy-coded) and a manifest."""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, JobError, UsageError
from hasrd.cli.jobs import (
    LATENT_SUFFIX,
    MANIFEST_NAME,
    TOKEN_SUFFIX,
    Job,
    make_parent,
    my_jobs,
    output_is_file,
    resolve_jobs,
    run_jobs,
)
from hasrd.cli.loading import MODEL_HELP, load_model, model_dir, n_q_option, resolve_device
from hasrd.coding import DEFAULT_CHUNK_SECONDS, encode_file, frames_per_chunk
from hasrd.dist import distributed, summary
from hasrd.io.atomic import host_tag

_ENTROPY_CODING = "range1"  # = hasrd.io.entropy.CODING (not imported here: keeps the CLI start fast)


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


def _encode_entropy(args: argparse.Namespace, codec):
    """The model's entropy tables for ``encode --entropy`` (UsageError if it has none), else None."""
    if not getattr(args, "entropy", False):
        return None
    from hasrd.io.entropy import TABLES_NAME, resolve_tables
    from hasrd.io.tokenfile import TokenFileError

    if codec.continuous:
        raise UsageError("--entropy: a continuous codec writes latent files, which have no entropy coding")
    where = model_dir(args.model)
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


def cmd_encode(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.audio import AUDIO_EXTENSIONS, find_audio_files

    if not 0 < args.chunk_seconds < float("inf"):  # also refuses nan
        raise UsageError(f"--chunk-seconds {args.chunk_seconds:g}: must be a positive number of seconds")
    if args.bitrate is not None and not 0 < args.bitrate < float("inf"):
        raise UsageError(f"--bitrate {args.bitrate:g}: must be a positive number of bits per second")
    out_root = Path(args.output)
    suffix = LATENT_SUFFIX if args.continuous else TOKEN_SUFFIX
    if not args.continuous and out_root.suffix.lower() == LATENT_SUFFIX:
        raise UsageError(f"{out_root}: .hsrl latent files need --continuous (and a continuous model)")
    out_is_file = output_is_file(args.inputs, out_root, (suffix,), corpora=True)
    dist = distributed(args.device)
    if dist.world > 1:
        torch.set_num_threads(1)
    codec = load_model(args.model, resolve_device(args.device, dist))
    _check_encode_kind(codec, args)
    work = _encode_work(args, codec, out_root)

    jobs = resolve_jobs(
        args.inputs, out_root, out_is_file, find_audio_files,
        lambda p: p.suffix.lower() in AUDIO_EXTENSIONS, suffix, corpora=True,
    )
    started = my_jobs(jobs, dist, out_root, out_is_file, "encode")
    if started is None:
        return EXIT_FAILED
    mine, report = started
    # this process's records, appended as it goes and merged at its end (also after Ctrl-C); a part
    # of a process that died is merged by the next encode into the folder
    part = None if out_is_file else out_root / f"{MANIFEST_NAME}.part.{host_tag()}.{os.getpid()}"
    work.part = part
    try:
        done, skipped = run_jobs(mine, report, work)
    finally:
        if part is not None and (part.exists() or any(_stale_parts(out_root))):
            try:
                _merge_manifest(out_root, part)
            except OSError as exc:
                report.error(f"{out_root / MANIFEST_NAME}: cannot write the manifest: {exc.strerror or exc}")
    dist.barrier()
    summary("encoded", done, skipped, report.failed, dist)
    return EXIT_FAILED if report.failed else EXIT_OK


def _encode_work(args: argparse.Namespace, codec, out_root: Path) -> _EncodeWork:
    """The work of one encode job with this model and these options (the manifest part not yet set)."""
    from hasrd.io.latentfile import load_latent, save_latent
    from hasrd.io.tokenfile import load_tokens, save_tokens

    n_q = None if codec.continuous else n_q_option(codec, args.n_q, args.bitrate)
    load_output, save_output = (load_latent, save_latent) if codec.continuous else (load_tokens, save_tokens)
    entropy = _encode_entropy(args, codec)  # the model's entropy tables with --entropy, else None
    if not codec.continuous:  # existing outputs may be entropy-coded: read them with the model's tables
        load_output = functools.partial(load_tokens, tables=entropy or model_dir(args.model))
        save_output = functools.partial(save_tokens, entropy=entropy)
    return _EncodeWork(
        codec=codec, n_q=n_q, coding=_ENTROPY_CODING if entropy is not None else None,
        chunk_frames=frames_per_chunk(codec, args.chunk_seconds), fingerprint=codec.fingerprint(),
        load_output=load_output, save_output=save_output, force=args.force, out_root=out_root,
    )


@dataclass
class _EncodeWork:
    """One encode job (called by :func:`run_jobs`): True when it wrote its output, False when it
    kept the one there; its record goes to the rank's manifest ``part`` (None: a single output)."""

    codec: Any
    n_q: int | None
    coding: str | None  # the payload coding of the outputs: entropy-coded or None (bit-packed)
    chunk_frames: int
    fingerprint: str
    load_output: Callable
    save_output: Callable
    force: bool
    out_root: Path
    part: Path | None = None

    def __call__(self, job: Job) -> bool:
        out = job.out
        existed = out.exists()
        record_meta = self._kept(job)
        if record_meta is None:
            # a new output must still be new when written: another process may have made it since
            record_meta, size = self._encode(job, overwrite=self.force or existed)
            wrote = True
        else:
            size = out.stat().st_size
            wrote = False
        if self.part is not None:
            with open(self.part, "a", encoding="utf-8") as fh:  # appended as we go; merged at the end
                fh.write(json.dumps(_token_record(out, self.out_root, job.src, record_meta, size)) + "\n")
        return wrote

    def _kept(self, job: Job) -> dict | None:
        """The metadata of the output already there when this run keeps it (None: encode); a
        JobError where it must not be overwritten."""
        from hasrd.io.latentfile import LatentFileError
        from hasrd.io.tokenfile import TokenFileError

        out = job.out
        if not out.exists() or self.force:
            return None
        if not job.resumable:
            raise JobError(f"output {out} exists (use --force to overwrite it)")
        try:
            _, record_meta = self.load_output(out)
        except (TokenFileError, LatentFileError, OSError):
            return None  # a broken leftover: encode again
        if (
            record_meta["fingerprint"] != self.fingerprint or record_meta.get("n_q") != self.n_q
            or record_meta.get("payload_coding") != self.coding
        ):
            setting = f"n_q={record_meta['n_q']}" if "n_q" in record_meta else "a latent"
            if record_meta.get("payload_coding") != self.coding:
                setting += ", " + ("entropy-coded" if record_meta.get("payload_coding") else "bit-packed")
            raise JobError(
                f"output {out} exists with other settings (model {record_meta['fingerprint']}, "
                f"{setting}); use --force to overwrite it"
            )
        return record_meta

    def _encode(self, job: Job, overwrite: bool) -> tuple[dict, int]:
        """Encode ``job`` and write its output: ``(its record's metadata, bytes written)``."""
        out = job.out
        codes, meta = encode_file(self.codec, job.src, self.n_q, self.chunk_frames)
        make_parent(out)
        try:
            size = self.save_output(out, codes, meta, overwrite=overwrite)
        except FileExistsError:
            raise JobError(f"output {out} was written by another process meanwhile (use --force to overwrite it)") from None
        except OSError as exc:
            raise JobError(f"cannot write {out}: {exc.strerror or exc}") from None
        record_meta = {"num_frames": codes.shape[1], "duration": meta["length"] / meta["orig_sample_rate"],
                       **({"latent_dim": codes.shape[0]} if self.codec.continuous else {"n_q": self.n_q})}
        return record_meta, size


def _stale_parts(root: Path) -> list[Path]:
    """Manifest parts whose writer is gone: ``manifest.jsonl.part.HOST.PID`` of a dead process of
    this host, and ``manifest.jsonl.partN`` of hasrd versions that named parts by rank."""
    from hasrd.io.atomic import host_tag, process_alive

    out = []
    for p in root.glob(f"{MANIFEST_NAME}.part*"):
        rest = p.name[len(MANIFEST_NAME) + len(".part"):]
        if rest.isdigit():
            out.append(p)
            continue
        fields = rest.split(".")
        if len(fields) == 3 and fields[0] == "" and fields[1] == host_tag() and fields[2].isdigit() \
                and not process_alive(int(fields[2])):
            out.append(p)
    return out


@contextlib.contextmanager
def _folder_lock(root: Path):
    """An exclusive lock on the output folder while the manifest is rewritten (POSIX ``flock`` on
    the folder itself: two encodes into one folder never lose each other's records)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one writer per folder
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_records(path: Path, root: Path, into: dict[str, dict]) -> None:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("path"), str) and (root / rec["path"]).is_file():
            into[rec["path"]] = rec


def _merge_manifest(root: Path, own: Path) -> None:
    """Fold this process's part ``own`` and the parts of dead writers into ``manifest.jsonl``
    (kept entries: earlier runs' and other processes', still on disk), under the folder lock."""
    from hasrd.io.tokenfile import atomic_write_bytes

    with _folder_lock(root):
        entries: dict[str, dict] = {}
        manifest = root / MANIFEST_NAME
        if manifest.is_file():
            _read_records(manifest, root, entries)
        # leftovers first, this process's part last: the newest record of a path wins
        parts = sorted(_stale_parts(root)) + ([own] if own.exists() else [])
        for part in parts:
            _read_records(part, root, entries)
        text = "".join(json.dumps(entries[k]) + "\n" for k in sorted(entries))
        atomic_write_bytes(manifest, text.encode("utf-8"))
        for part in parts:
            part.unlink(missing_ok=True)


def add_parser(sub) -> None:
    enc = sub.add_parser("encode", help="audio files or folders -> .hsrd token files",
                         description="Encode audio (any rate, mono or stereo, wav/flac/ogg) into .hsrd token files.")
    enc.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="audio files, folders (searched recursively), quoted glob patterns, Lhotse manifests "
                     "(cuts_*.jsonl.gz, recordings_*.jsonl.gz) or hf-dataset:NAME_OR_PATH[:SPLIT][?streaming=1]; "
                     "corpus items are written as OUT/ID.hsrd")
    enc.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="output folder (the input tree is mirrored under it), or a file name for a single input")
    enc.add_argument("--model", default=None, metavar="DIR", help=MODEL_HELP)
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
    enc.add_argument("--entropy", action="store_true",
                     help="write entropy-coded token files (format version 2) with the model's entropy.json "
                     "(made by hasrd entropy-fit); hasrd decode reads them with the same model")
    enc.set_defaults(func=cmd_encode)
