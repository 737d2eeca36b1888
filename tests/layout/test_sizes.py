"""The house rules for the package's size: no module of ``hasrd`` over 500 lines, no function over
80 (a longer one is several steps that want names), no private name imported from another module
of another subpackage (``scripts/count_private_imports.py`` counts them)."""
from __future__ import annotations

import ast
import importlib.util

from tests.conftest import ROOT

PKG = ROOT / "hasrd"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_no_function_is_over_80_lines():
    long = {}
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, long


def test_no_private_name_is_imported_across_packages():
    spec = importlib.util.spec_from_file_location("count_private_imports", ROOT / "scripts" / "count_private_imports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    hits = mod.occurrences(outside=False, within=False)
    assert hits == [], hits
