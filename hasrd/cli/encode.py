"""``hasrd encode``: audio files, folders, globs or corpora (Lhotse manifests, ``hf-dataset:``
specs) -> ``.hsrd`` token files (``.hsrl`` latent files for a continuous codec, bit-packed or, with
``--entropy``, entropy-coded) and a manifest."""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from hasrd.cli.common import (
    DEFAULT_CHUNK_SECONDS,
    EXIT_FAILED,
    EXIT_OK,
    LATENT_SUFFIX,
    MANIFEST_NAME,
    MODEL_HELP,
    TOKEN_SUFFIX,
    Job,
    JobError,
    UsageError,
    _chunk_frames,
    _device,
    _encode_file,
    _load_model,
    _make_parent,
    _model_dir,
    _my_jobs,
    _output_mode,
    _pick_n_q,
    _run_jobs,
    resolve_jobs,
)
from hasrd.dist import distributed, summary

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
    out_is_file = _output_mode(args.inputs, out_root, (suffix,), corpora=True)
    dist = distributed(args.device)
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
        lambda p: p.suffix.lower() in AUDIO_EXTENSIONS, suffix, corpora=True,
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
    summary("encoded", done, skipped, report.failed, dist)
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
