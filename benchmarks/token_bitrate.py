"""Actual against nominal bitrate of whole token files, per format version and ``n_q``.

    python benchmarks/token_bitrate.py [--model default] [--data hasrd/assets/eval] [--json OUT]

Encodes every audio file under ``--data`` once with all of the model's codebooks (as ``hasrd
encode`` does: 30 s chunks), then writes the first ``n_q`` codebooks of each file in memory as
version 1 (JSON header, bit-packed), version 3 (binary header, bit-packed: what ``hasrd encode``
writes) and, when the model folder has ``entropy.json``, version 2 and version 3 entropy-coded
(``hasrd encode --entropy``), and prints per ``n_q`` the bits per second of audio of the whole
files summed over the set (header, checksum and all), beside ``Codec.bitrate(n_q)``. Nothing is
written except the optional ``--json`` report.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(model: str, data: str) -> dict:
    import torch

    from hasrd.cli.loading import model_dir
    from hasrd.codecs import load_codec
    from hasrd.coding import encode_file, frames_per_chunk
    from hasrd.io.audio import find_audio_files
    from hasrd.io.entropy import TABLES_NAME, EntropyTables
    from hasrd.io.tokenfile import tokens_to_bytes

    codec = load_codec(model).eval()
    folder = model_dir(model)
    tables = EntropyTables.load(folder) if (folder / TABLES_NAME).is_file() else None
    files = sorted(find_audio_files(Path(data)))
    with torch.inference_mode():
        encoded = [encode_file(codec, f, codec.num_codebooks, frames_per_chunk(codec)) for f in files]
    seconds = sum(meta["length"] / meta["orig_sample_rate"] for _, meta in encoded)
    kinds = {"v1": {"format_version": 1}, "v3": {"format_version": 3}}
    if tables is not None:
        kinds.update({"v2 entropy": {"format_version": 2, "entropy": tables},
                      "v3 entropy": {"format_version": 3, "entropy": tables}})
    rows = []
    for n in range(1, codec.num_codebooks + 1):
        row = {"n_q": n, "nominal_bps": codec.bitrate(n)}
        for name, kw in kinds.items():
            total = sum(len(tokens_to_bytes(codes[:n], meta, **kw)) for codes, meta in encoded)
            row[f"{name}_bps"] = total * 8 / seconds
        rows.append(row)
    return {"model": model, "codec": codec.codec_name, "fingerprint": codec.fingerprint(), "data": data,
            "files": len(files), "seconds": seconds, "kinds": list(kinds), "rows": rows}


def table(report: dict) -> str:
    kinds = report["kinds"]
    lines = [f"model {report['model']} ({report['codec']} {report['fingerprint']}), {report['files']} file(s), "
             f"{report['seconds']:.2f} s; whole files, bit/s summed over the set (vs nominal)", "",
             "| n_q | nominal | " + " | ".join(kinds) + " |", "| ---: | ---: |" + " ---: |" * len(kinds)]
    for r in report["rows"]:
        cells = [f"{r[k + '_bps']:.1f} ({100 * (r[k + '_bps'] / r['nominal_bps'] - 1):+.1f} %)" for k in kinds]
        lines.append(f"| {r['n_q']} | {r['nominal_bps']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="a built-in model or a model folder (default: default)")
    parser.add_argument("--data", default=str(ROOT / "hasrd" / "assets" / "eval"), help="folder of audio")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    args = parser.parse_args(argv)
    report = run(args.model, args.data)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
