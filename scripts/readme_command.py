#!/usr/bin/env python3
"""Print the README's quickstart command named on the command line ("main" or "test").

The README marks each with an HTML comment (``<!-- command: test -->``) on the line before a
fenced block; CI and the docs test read the commands from there, so the README stays true.
"""
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_command(name: str) -> str:
    text = README.read_text()
    m = re.search(r"<!-- command: " + re.escape(name) + r" -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    if not m:
        raise SystemExit(f"readme_command.py: README.md has no '<!-- command: {name} -->' block")
    lines = [l for l in m.group(1).strip().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    return " && ".join(lines)


if __name__ == "__main__":
    print(readme_command(sys.argv[1] if len(sys.argv) > 1 else "test"))
