"""``hasrd info``: the header of a ``.hsrd`` token file (or ``.hsrl`` latent file) as JSON, with its
nominal, actual and payload bitrate."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, UsageError, debug_mode, problem_line
from hasrd.cli.loading import model_dir


def _latent_info(path: Path) -> int:
    """``hasrd info`` of a ``.hsrl`` latent file: its metadata, nominal (float16) and actual bitrate."""
    from hasrd.io.latentfile import load_latent

    try:
        _, meta = load_latent(path)
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header_bytes = int.from_bytes(fh.read(8), "little")
    except Exception as exc:
        if debug_mode():
            raise
        print(f"hasrd: error: {problem_line(exc, path)}", file=sys.stderr)
        return EXIT_FAILED
    duration = meta.pop("duration")
    meta.pop("crc32", None)
    report = {"file": str(path), "bytes": size, "header_bytes": header_bytes, **meta, "duration": duration}
    report["nominal_bitrate"] = meta["frame_rate"] * meta["latent_dim"] * 16
    report["actual_bitrate"] = size * 8 / duration if duration > 0 else None
    print(json.dumps(report, indent=2))
    return EXIT_OK


def _payload_report(meta: dict, layout: dict, decoded: bool) -> dict:
    """``hasrd info``'s payload fields: coding, payload size and bitrate (codes only, no header),
    and whether the codes were decoded and checked (always for bit-packed files; for entropy-coded
    ones only with ``--model``)."""
    payload = layout["payload_bytes"]
    duration = meta["duration"]
    return {"payload_coding": meta.get("payload_coding") or "bits", "payload_bytes": payload,
            "payload_bitrate": payload * 8 / duration if duration > 0 else None,
            "codes_verified": decoded or not meta.get("payload_coding")}


def cmd_info(args: argparse.Namespace) -> int:
    from hasrd.io.latentfile import file_kind

    path = Path(args.file)
    if file_kind(path) == "latent":
        return _latent_info(path)
    # an entropy-coded file is decoded (codes checked) with --model's tables, else its header,
    # size and checksum are checked (a --model that cannot be found is a usage error, exit 2)
    tables = model_dir(args.model) if getattr(args, "model", None) else None
    if tables is not None and not (tables / "config.json").is_file():
        raise UsageError(f"--model {args.model}: not a model folder (no config.json in {tables})")
    try:
        from hasrd.io.tokenfile import check_tokens, token_layout

        meta = check_tokens(path, tables)
        layout = token_layout(path)
    except Exception as exc:
        if debug_mode():
            raise
        print(f"hasrd: error: {problem_line(exc, path)}", file=sys.stderr)
        return EXIT_FAILED
    from hasrd.io.modelindex import builtin_name
    from hasrd.rates import bitrate

    duration = meta["duration"]
    report = {"file": str(path), "bytes": layout["bytes"], "header_bytes": layout["header_bytes"],
              "overhead_bytes": layout["overhead_bytes"]}
    report.update(meta)
    report["builtin_model"] = builtin_name(meta["codec"], meta["fingerprint"])
    report["nominal_bitrate"] = bitrate(meta["frame_rate"], meta["codebook_sizes"], meta["n_q"])
    report["actual_bitrate"] = layout["bytes"] * 8 / duration if duration > 0 else None
    report.update(_payload_report(meta, layout, bool(getattr(args, "model", None))))
    print(json.dumps(report, indent=2))
    return EXIT_OK


def add_parser(sub) -> None:
    inf = sub.add_parser("info", help="print a token file's header as JSON",
                         description="Print the header of a .hsrd (or .hsrl latent) file with its nominal and actual bitrate.")
    inf.add_argument("file", metavar="FILE")
    inf.add_argument("--model", default=None, metavar="DIR",
                     help="decode an entropy-coded file fully with this model's entropy tables "
                     "(default: check its header, size and checksum)")
    inf.set_defaults(func=cmd_info)
