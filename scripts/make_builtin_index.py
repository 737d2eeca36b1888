#!/usr/bin/env python3
"""Write ``hasrd/pretrained/builtin_index.json``: the facts of the built-in models a version 3
token file leaves out (``hasrd.io.modelindex``, ``docs/token_files.md``).

Run it after the shipped weights of a built-in model change, and commit the result with them::

    python scripts/make_builtin_index.py            # rewrite the index
    python scripts/make_builtin_index.py --check    # exit 1 if the index is out of date

It loads each installed built-in model, records its codec name, fingerprint, rates and codebook
sizes, and keeps the entries of models no longer installed (``"current": false``) so that their
token files stay readable. ``tests/io/test_modelindex.py`` fails while the index is stale.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def current_entries() -> list[dict]:
    """One entry per installed built-in model, in ``BUILTIN_MODELS`` order (loads each model)."""
    from hasrd.codecs import BUILTIN_MODELS, PRETRAINED_DIR, load_codec
    from hasrd.io.modelindex import entry_of

    return [entry_of(name, load_codec(name)) for name in BUILTIN_MODELS
            if (PRETRAINED_DIR / name / "model.safetensors").is_file()]


def render(index: dict) -> str:
    """The index as written: one model per line, so that a change shows as a small diff."""
    head = {k: v for k, v in index.items() if k != "models"}
    lines = [json.dumps(m, separators=(", ", ": ")) for m in index["models"]]
    return json.dumps(head)[:-1] + ', "models": [\n  ' + ",\n  ".join(lines) + "\n]}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if the index is out of date")
    p.add_argument("--output", default=None, help="default: hasrd/pretrained/builtin_index.json")
    args = p.parse_args(argv)
    from hasrd.io.atomic import atomic_write_bytes
    from hasrd.io.modelindex import INDEX_PATH, merged_index

    out = Path(args.output) if args.output else INDEX_PATH
    previous = json.loads(out.read_text()) if out.is_file() else None
    text = render(merged_index(current_entries(), previous))
    if args.check:
        same = out.is_file() and out.read_text() == text
        print(f"{out}: {'up to date' if same else 'OUT OF DATE: run scripts/make_builtin_index.py'}")
        return 0 if same else 1
    atomic_write_bytes(out, text.encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
