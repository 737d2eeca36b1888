"""Nominal vs entropy-coded bitrate of a model's codes on held-out speech.

    python benchmarks/entropy_bitrate.py --model DIR --data DIR [--split file|folder] [--every K] [--json OUT]

Encodes every audio file under ``--data`` with all of the model's codebooks (as ``hasrd encode``
does), fits entropy tables (``hasrd.io.entropy.fit_tables``) on one part of the files and
entropy-codes the other, held-out part at every ``n_q``, then prints per ``n_q``:

* ``nominal``: ``Codec.bitrate(n_q)``, the codec's nominal bitrate;
* ``packed``: the bit-packed payload of a version 1 token file, per second of audio;
* ``entropy``: the entropy-coded payload of a version 2 file, per second (codes only);
* ``file v1`` / ``file v2``: whole files (header, checksum and all) per second, with the JSON
  header of format versions 1 and 2 (``benchmarks/token_bitrate.py`` compares version 3);
* ``saving``: ``1 - entropy / nominal`` (payload), and the same for whole files.

The split: ``file`` holds out every ``K``-th file of the sorted list (default K = 2: half);
``folder`` holds out every ``K``-th folder (a speaker per folder keeps speakers apart). Nothing is
written except the optional ``--json`` report.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def split_files(files: list[Path], root: Path, how: str, every: int) -> tuple[list[Path], list[Path]]:
    """``(fit, held_out)``: every ``every``-th file (or folder) is held out."""
    if how == "file":
        held = [f for i, f in enumerate(files) if i % every == every - 1]
    else:
        folders = sorted({f.parent for f in files})
        out = {d for i, d in enumerate(folders) if i % every == every - 1}
        held = [f for f in files if f.parent in out]
    fit = [f for f in files if f not in set(held)]
    return fit, held


def run(model: str, data: str, how: str = "file", every: int = 2, chunk_seconds: float = 30.0,
        smoothing: float = 0.5) -> dict:
    import torch

    from hasrd.codecs import load_codec
    from hasrd.coding import encode_file, frames_per_chunk
    from hasrd.io.audio import find_audio_files
    from hasrd.io.entropy import fit_tables
    from hasrd.io.tokenfile import payload_bytes, tokens_to_bytes

    if every < 2:
        raise ValueError("--every must be at least 2")
    codec = load_codec(model).eval()
    root = Path(data)
    files = sorted(find_audio_files(root))
    fit_files, held_files = split_files(files, root, how, every)
    if not fit_files or not held_files:
        raise ValueError(f"{root}: {len(files)} audio file(s) do not split into a fitting and a held-out part "
                         f"(--split {how} --every {every})")
    N = codec.num_codebooks
    chunk = frames_per_chunk(codec, chunk_seconds)
    with torch.inference_mode():
        fit_codes = [encode_file(codec, f, N, chunk)[0] for f in fit_files]
        held = [encode_file(codec, f, N, chunk) for f in held_files]
    tables = fit_tables(fit_codes, codec, smoothing=smoothing)
    seconds = sum(meta["length"] / meta["orig_sample_rate"] for _, meta in held)
    rows = []
    for n in range(1, N + 1):
        packed = coded = file_v1 = file_v2 = 0
        for codes, meta in held:
            c = codes[:n]
            packed += payload_bytes(c.shape[1], codec.codebook_sizes[:n])
            v1 = tokens_to_bytes(c, meta, format_version=1)
            v2 = tokens_to_bytes(c, meta, entropy=tables, format_version=2)
            h2 = int.from_bytes(v2[5:7], "little")
            coded += len(v2) - 7 - h2 - 4
            file_v1 += len(v1)
            file_v2 += len(v2)
        nominal = codec.bitrate(n)
        rows.append({
            "n_q": n,
            "nominal_bps": nominal,
            "packed_bps": packed * 8 / seconds,
            "entropy_bps": coded * 8 / seconds,
            "file_v1_bps": file_v1 * 8 / seconds,
            "file_v2_bps": file_v2 * 8 / seconds,
            "saving_payload": 1 - coded * 8 / seconds / nominal,
            "saving_file": 1 - file_v2 * 8 / seconds / nominal,
        })
    return {
        "model": str(model), "codec": codec.codec_name, "fingerprint": codec.fingerprint(),
        "data": str(root), "split": how, "every": every, "smoothing": smoothing,
        "fit_files": len(fit_files), "heldout_files": len(held_files),
        "fit_frames": tables.info["frames"], "heldout_seconds": seconds,
        "repeat_flag": [r is not None for r in tables.repeat],
        "fit_bits_per_code": tables.info["bits_per_code"],
        "rows": rows,
    }


def table(report: dict) -> str:
    lines = [
        f"model {report['codec']} {report['fingerprint']}; tables fitted on {report['fit_files']} file(s) "
        f"({report['fit_frames']} frames), measured on {report['heldout_files']} held-out file(s) "
        f"({report['heldout_seconds']:.1f} s); repeat flag per codebook: "
        + "".join("R" if r else "-" for r in report["repeat_flag"]),
        "",
        "| n_q | nominal bps | packed bps | entropy bps | saving (payload) | file v1 bps | file v2 bps | saving (file) |",
        "|----:|------------:|-----------:|------------:|-----------------:|------------:|------------:|--------------:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['n_q']} | {r['nominal_bps']:.1f} | {r['packed_bps']:.1f} | {r['entropy_bps']:.1f} | "
            f"{100 * r['saving_payload']:.1f} % | {r['file_v1_bps']:.1f} | {r['file_v2_bps']:.1f} | "
            f"{100 * r['saving_file']:.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, metavar="DIR", help="model folder (or 'default')")
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of speech (searched recursively)")
    parser.add_argument("--split", choices=["file", "folder"], default="file", help="hold out files or folders")
    parser.add_argument("--every", type=int, default=2, metavar="K", help="hold out every K-th file/folder (default 2)")
    parser.add_argument("--smoothing", type=float, default=0.5, metavar="A", help="table smoothing (default 0.5)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = run(args.model, args.data, args.split, args.every, smoothing=args.smoothing)
    except (ValueError, FileNotFoundError) as exc:
        print(f"entropy_bitrate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
