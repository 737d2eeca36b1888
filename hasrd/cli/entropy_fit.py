"""``hasrd entropy-fit``: fit a model's static entropy tables (``entropy.json``, for
``encode --entropy``) on the codes of a corpus of audio or ``.hsrd`` files."""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from pathlib import Path

import numpy as np

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, JobError, UsageError, debug_mode, problem_line
from hasrd.cli.jobs import TOKEN_SUFFIX
from hasrd.cli.loading import MODEL_HELP, load_model, model_dir
from hasrd.cli.progress import Reporter
from hasrd.coding import DEFAULT_CHUNK_SECONDS, encode_file, frames_per_chunk


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
    codec = load_model(args.model, "cpu")
    if codec.continuous:
        raise UsageError(f"the model {args.model or 'default'} is a continuous codec: it has no codes to entropy-code")
    fingerprint, N = codec.fingerprint(), codec.num_codebooks
    chunk_frames = frames_per_chunk(codec, DEFAULT_CHUNK_SECONDS)
    inputs = _fit_inputs(args.inputs)
    report = Reporter(len(inputs), "entropy-fit", show=True)
    arrays: list[np.ndarray] = []
    with torch.inference_mode():
        for src, problem in inputs:
            try:
                if problem:
                    raise JobError(problem)
                if src.suffix == TOKEN_SUFFIX:
                    codes, meta = load_tokens(src, model_dir(args.model))
                    if meta["codec"] != codec.codec_name or meta["fingerprint"] != fingerprint:
                        raise JobError(f"made by another model ({meta['codec']} {meta['fingerprint']}) than this one "
                                       f"({codec.codec_name} {fingerprint})")
                else:
                    codes, _ = encode_file(codec, src, N, chunk_frames)
                arrays.append(codes)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                if debug_mode():
                    raise
                report.error(problem_line(exc, src))
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


def add_parser(sub) -> None:
    fit = sub.add_parser("entropy-fit", help="fit a model's entropy tables (for encode --entropy)",
                         description="Fit static per-codebook frequency tables on the codes of a corpus (audio "
                         "files, encoded with the model, or its .hsrd token files) and write them as entropy.json.")
    fit.add_argument("inputs", nargs="+", metavar="INPUT", help="audio or .hsrd files, folders (searched recursively) or quoted globs")
    fit.add_argument("--model", default=None, metavar="DIR", help=MODEL_HELP)
    fit.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="model folder (writes OUT/entropy.json, where encode/decode --model look) or a .json file")
    fit.add_argument("--smoothing", type=float, default=0.5, metavar="A",
                     help="pseudo-count added to every code, so any code stays encodable (default 0.5)")
    fit.add_argument("--no-repeat", action="store_true", help="never code repeated codes with a repeat flag")
    fit.add_argument("--force", action="store_true", help="replace an existing table file")
    fit.set_defaults(func=cmd_entropy_fit)
