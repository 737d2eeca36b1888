"""``hasrd models``: the built-in models, what each is for, its size and where it is measured.

Reads the models' folders under ``hasrd/pretrained/`` (their config and the tensor shapes in the
safetensors header) without torch, so it answers at once."""
from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

from hasrd.cli.errors import EXIT_OK

#: what each built-in model is for and where its measured tables are (a model folder not listed
#: here is still shown, with its folder as its doc)
ABOUT = {
    "default": ("codec", "the default codec: HASRD, semantic + acoustic codebooks, 50 Hz", "docs/default_model.md"),
    "hcodec-25hz": ("codec", "dual-stream codec (H-Codec style), 25 Hz", "docs/hcodec_model.md"),
    "pitch": ("codec", "pitch-stream codec: envelope tokens + F0 and voicing, rendered by a synthesiser",
              "docs/pitch.md"),
}


def stored_values(weights: Path) -> int:
    """Numbers stored in a ``model.safetensors`` file (parameters and buffers such as codebook
    statistics), from its JSON header (no tensor is read)."""
    with open(weights, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    total = 0
    for name, info in header.items():
        if name != "__metadata__":
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            total += count
    return total


def describe(folder: Path) -> dict:
    """One built-in model's row: name, kind, purpose, parameters, size on disk, sample rate, rates
    (codecs: kbit/s per ``n_q``) or tasks, and its doc."""
    from hasrd.io.modelindex import entries
    from hasrd.rates import bitrate

    name = folder.name
    kind, purpose, doc = ABOUT.get(name, ("model", "", str(folder)))
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    row = {"name": name, "kind": kind, "purpose": purpose,
           "weights": stored_values(folder / "model.safetensors"), "bytes": size}
    cfg = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    entry = next((e for e in entries() if e["name"] == name and e.get("current", True)), None)
    if entry is not None:
        sizes = entry["codebook_sizes"]
        row["sample_rate"] = entry["sample_rate"]
        row["codec"] = entry["codec"]
        row["kbps"] = [round(bitrate(entry["frame_rate"], sizes, n) / 1000, 3) for n in range(1, len(sizes) + 1)]
    else:
        row["sample_rate"] = cfg.get("model", {}).get("sample_rate")
        row["tasks"] = cfg.get("tasks")
    row["doc"] = doc
    return row


def list_models() -> list[dict]:
    """Every installed built-in model, in the order of the built-in index (torch-free: not through
    :mod:`hasrd.codecs`, whose import loads torch)."""
    import hasrd
    from hasrd.io.modelindex import entries

    root = Path(hasrd.__file__).resolve().parent / "pretrained"
    names = dict.fromkeys(e["name"] for e in entries() if e.get("current", True))
    return [describe(root / name) for name in names if (root / name / "model.safetensors").is_file()]


def cmd_models(args: argparse.Namespace) -> int:
    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    head = ("name", "kind", "weights", "size", "rate", "kbit/s (n_q 1..) or tasks", "doc")
    table = [head]
    for r in rows:
        rates = ", ".join(f"{k:g}" for k in r["kbps"]) if "kbps" in r else ", ".join(r.get("tasks") or [])
        table.append((r["name"], r["kind"], f"{r['weights'] / 1e6:.2f} M", f"{r['bytes'] / 1e6:.1f} MB",
                      f"{r['sample_rate'] / 1000:g} kHz" if r.get("sample_rate") else "-", rates, r["doc"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    total = sum(r["bytes"] for r in rows)
    print(f"\n{len(rows)} built-in models, {total / 1e6:.1f} MB on disk; what each is for: hasrd models --json")
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the built-in models",
                       description="List the built-in models: kind, weights (parameters and buffers), size on disk, sample rate, "
                                   "bitrates per n_q (codecs) or tasks, and the doc with their measurements.")
    p.add_argument("--json", action="store_true", help="print the list as JSON (with each model's purpose)")
    p.set_defaults(func=cmd_models)
