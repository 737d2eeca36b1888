"""hasrd.eval: one evaluator for hasrd codecs and baselines (see docs/evaluation.md).

Importing this package is cheap: the metric libraries and judge models load on first use.
"""
from __future__ import annotations

from typing import Any

__all__ = ["main", "run_evaluation", "write_report", "EvalOptions", "EvalResult", "EvalError",
           "System", "parse_baseline", "DEFAULT_EVAL_DIR"]

_LAZY = {
    "run_evaluation": "run", "EvalOptions": "run", "EvalResult": "run", "EvalError": "run",
    "write_report": "report", "System": "systems", "parse_baseline": "systems", "DEFAULT_EVAL_DIR": "data",
}


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``hasrd eval`` / ``python evaluate.py``: parse ``argv`` and run; returns the exit code."""
    from .cli import main as _main

    return _main(argv, prog)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
