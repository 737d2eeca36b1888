"""Where the evaluator's output goes, shared by every kind of run (codecs, token-LM tasks,
speech-to-audio): one-line messages on stderr, files written atomically (JSON-safe values, CSV),
and the cells of the markdown tables."""
from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

import numpy as np


def say(msg: str) -> None:
    """``msg`` as one line on stderr, at once."""
    print(msg, file=sys.stderr, flush=True)


def warn_once(failed: set[str], system: str, utt: str, exc: BaseException) -> None:
    """One stderr line for the first failure of ``system`` in a run (later ones only count)."""
    if system not in failed:
        say(f"warning: {system} failed on {utt}: {type(exc).__name__}: {exc}")
        failed.add(system)


def clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write(path: Path, text: str) -> None:
    """``text`` into ``path`` (UTF-8), atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` as CSV (every key of any row, in order of appearance; NaN, None and missing
    values as empty cells), atomically."""
    keys = list(dict.fromkeys(k for row in rows for k in row)) or ["name"]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
                        for k, v in row.items()})
    os.replace(tmp, path)


def cell(stat: dict | None, key: str, fmt: str) -> str:
    """A table cell: mean ± 95 % CI, or a rate in % with its interval (WER/CER); "-" for none."""
    if stat is None:
        return "-"
    if key in ("wer", "cer"):
        if not np.isfinite(stat["rate"]):
            return "-"
        return (fmt.format(100 * stat["rate"]) + f" [{100 * stat['lo']:.1f}, {100 * stat['hi']:.1f}]")
    if stat.get("n", 1) == 0 or not np.isfinite(stat["mean"]):
        return "-"
    text = fmt.format(stat["mean"])
    if np.isfinite(stat["ci95"]):
        text += " ± " + fmt.format(stat["ci95"])
    return text
