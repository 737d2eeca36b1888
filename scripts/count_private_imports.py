"""Count the private names imported across the subpackages of ``hasrd``.

A private name is one with a leading underscore (dunders such as ``__version__`` excepted). An
occurrence is a ``from X import _name`` (at the top of a file or inside a function; relative imports
resolved) in a module of ``hasrd`` whose subpackage differs from X's. The subpackage of a module is
the first component under ``hasrd``: ``hasrd.eval.systems.hf`` is in ``hasrd.eval``,
``hasrd.hub`` is its own, ``hasrd/__init__.py`` is ``hasrd``.

    python scripts/count_private_imports.py            # the count, then one line per occurrence
    python scripts/count_private_imports.py --outside  # also importers outside hasrd/ (scripts, benchmarks, tests)
    python scripts/count_private_imports.py --within   # also private imports inside one subpackage

Prints ``N private cross-package imports`` and ``file:line: importer <- X._name`` lines; exit 0.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("scripts", "benchmarks", "tests", "evaluate.py", "train.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def subpackage(module: str) -> str:
    """``hasrd.eval.systems.hf`` -> ``hasrd.eval``; anything outside ``hasrd`` -> its first component."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "hasrd" else parts[0]


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path) -> list[tuple[int, str, str]]:
    """``(line, imported-from module, name)`` of every ``from X import _name`` in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            anchor = parts[: len(parts) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        found += [(node.lineno, base, a.name) for a in node.names if is_private(a.name)]
    return sorted(found)


def files(outside: bool) -> list[Path]:
    out = sorted((ROOT / "hasrd").rglob("*.py"))
    if outside:
        for top in OUTSIDE:
            p = ROOT / top
            out += sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.is_file() else [])
    return out


def occurrences(outside: bool = False, within: bool = False) -> list[str]:
    lines = []
    for path in files(outside):
        importer = module_name(path)
        for line, source, name in private_imports(path):
            if not source.startswith("hasrd"):
                continue  # a third-party private name is not ours to fix
            if not within and subpackage(source) == subpackage(importer):
                continue
            lines.append(f"{path.relative_to(ROOT)}:{line}: {importer} <- {source}.{name}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outside", action="store_true", help="also count importers outside hasrd/ (scripts, benchmarks, tests)")
    ap.add_argument("--within", action="store_true", help="also count private imports within one subpackage")
    args = ap.parse_args(argv)
    found = occurrences(args.outside, args.within)
    what = "private imports" if args.within else "private cross-package imports"
    try:
        print(f"{len(found)} {what}")
        for line in found:
            print(line)
    except BrokenPipeError:  # piped into head
        sys.stdout = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
