#!/usr/bin/env python3
"""The tested set of versions (``constraints.txt``): write it from an environment, compare one to it.

``scripts/install.sh`` installs with ``pip -c constraints.txt`` unless told ``--latest``, so a fresh
machine gets the versions the test suite last passed with, not whatever the registry holds that day.

    python scripts/lockfile.py write                 # constraints.txt from the active environment
    python scripts/lockfile.py diff                  # what the active environment has that the lock does not
    python scripts/lockfile.py diff --lock other.txt

``write`` is meant to run in an environment where the README's test command has just passed
(``bash scripts/check_latest.sh --write-lock`` does exactly that, in a fresh virtual environment).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
# never pinned: the project itself, and the installer's own tools (a venv brings its own)
SKIP = {"hasrd", "pip", "setuptools", "wheel", "distribute"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Canonical name -> version of every distribution in the running interpreter's environment."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = canonical(name)
        if key not in SKIP:
            found.setdefault(key, dist.version)
    return found


def read_lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not m:
            raise SystemExit(f"lockfile.py: {path}:{n}: not a 'name==version' line: {line!r}")
        pins[canonical(m.group(1))] = m.group(2)
    return pins


def write(path: Path) -> int:
    pins = installed()
    if "torch" not in pins:
        raise SystemExit("lockfile.py: torch is not installed in this environment; run scripts/install.sh --dev first")
    head = [
        "# The tested set of versions: scripts/install.sh installs with 'pip -c' on this file unless told --latest.",
        f"# Written by 'python scripts/lockfile.py write' on {_dt.date.today().isoformat()} from an environment where",
        "# the README's test command passed: Python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}.",
        "# To move to newer versions: bash scripts/check_latest.sh --write-lock (docs/install.md).",
    ]
    body = [f"{name}=={pins[name]}" for name in sorted(pins)]
    path.write_text("\n".join(head + body) + "\n")
    print(f"lockfile.py: wrote {len(body)} pins to {path}")
    return 0


def diff(path: Path) -> int:
    """A Markdown table of every package whose installed version is not the locked one."""
    lock, have = read_lock(path), installed()
    rows = []
    for name in sorted(set(lock) | set(have)):
        a, b = lock.get(name, "-"), have.get(name, "-")
        if a != b:
            rows.append(f"| {name} | {a} | {b} |")
    if not rows:
        print(f"every installed package is at its version in {path.name} ({len(lock)} pins)")
        return 0
    print(f"| package | {path.name} | installed |\n| --- | --- | --- |")
    print("\n".join(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["write", "diff"])
    ap.add_argument("--lock", type=Path, default=LOCK, help="the constraints file (default: constraints.txt)")
    args = ap.parse_args(argv)
    if args.action == "write":
        return write(args.lock)
    if not args.lock.is_file():
        raise SystemExit(f"lockfile.py: no lock file at {args.lock}")
    return diff(args.lock)


if __name__ == "__main__":
    sys.exit(main())
