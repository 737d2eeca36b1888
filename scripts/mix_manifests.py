#!/usr/bin/env python3
"""Join corpus manifests into one training manifest, each path made absolute.

    python scripts/mix_manifests.py -o data/mix/manifest.jsonl data/corpus/manifest.jsonl data/real/manifest.jsonl

Every line of every input (JSONL, ``"path"`` relative to its manifest's folder or absolute) is
written with its ``"path"`` resolved, so the output can live anywhere; a ``"corpus"`` field
(the input manifest's folder name) is added where absent, for per-source counts. Lines keep
their order, inputs one after another (the trainer shuffles). ``--check`` also verifies that every
file exists. Written to a temp name and renamed. Exit 0, or 2 with one line for a bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def mix(inputs: list[Path], check: bool = False) -> list[dict]:
    out = []
    for src in inputs:
        base = src.resolve().parent
        try:
            lines = src.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"{src}: {exc.strerror or exc}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                path = obj["path"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{src}:{n}: expected a JSON object with a 'path'") from None
            p = Path(path) if os.path.isabs(path) else base / path
            if check and not p.is_file():
                raise ValueError(f"{src}:{n}: no such file {p}")
            obj["path"] = str(p)
            obj.setdefault("corpus", base.name)
            out.append(obj)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="JSONL manifests")
    ap.add_argument("-o", "--output", required=True, type=Path, help="the joined JSONL manifest")
    ap.add_argument("--check", action="store_true", help="fail if a listed file does not exist")
    args = ap.parse_args(argv)
    try:
        rows = mix(args.inputs, args.check)
    except ValueError as exc:
        print(f"mix_manifests.py: error: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, args.output)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["corpus"]] = counts.get(r["corpus"], 0) + 1
    print(f"mix_manifests.py: {len(rows)} lines to {args.output} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
