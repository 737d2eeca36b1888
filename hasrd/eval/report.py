"""Summaries, tables, files and plots of an evaluation run.

:func:`write_report` writes the files; the statistics are in :mod:`hasrd.eval.stats`, the markdown
in :mod:`hasrd.eval.tables`, the figure in :mod:`hasrd.eval.plots` (all importable from here too).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from .options import METRIC_KEYS, EvalResult
from .output import clean, write, write_csv
from .plots import PLOT_PANELS, plot
from .stats import (
    GAIN_COLUMNS,
    SNR_COLUMNS,
    corpus_rate,
    disentanglement_rows,
    enhancement_by_snr,
    enhancement_gains,
    mean_ci,
    paired_gains,
    summarize,
)
from .tables import TABLE_COLUMNS, enhancement_markdown, markdown, probes_markdown

__all__ = ["GAIN_COLUMNS", "METRIC_KEYS", "PLOT_PANELS", "ROW_KEYS", "SNR_COLUMNS", "TABLE_COLUMNS", "EvalResult",
           "corpus_rate", "disentanglement_rows", "enhancement_by_snr", "enhancement_gains", "enhancement_markdown",
           "markdown", "mean_ci", "paired_gains", "plot", "probes_markdown", "summarize", "write_report"]

ROW_KEYS = ("utt", "system", "family", "kind", "n_q", "duration", "bitrate_nominal", "bitrate_measured",
            "payload_bytes", "delay_ms", *METRIC_KEYS, "wer", "cer", "word_edits", "ref_words",
            "char_edits", "ref_chars", "ref_text", "hyp", "error")


def _write_per_file_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` as CSV: the columns of :data:`ROW_KEYS`, then any others sorted by name; atomically."""
    extra = sorted({k for r in rows for k in r} - set(ROW_KEYS))
    keys = list(ROW_KEYS) + extra
    with open(path.with_name(f".{path.name}.tmp"), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                            else r[k]) for k in keys})
    os.replace(path.with_name(f".{path.name}.tmp"), path)


def _flat_summary(summary: list[dict]) -> list[dict]:
    """The rows of ``summary.csv``: one per system, every statistic a column of its own."""
    flat = []
    for s in summary:
        row = {k: s[k] for k in ("name", "family", "kind", "n_q", "utterances", "failed", "kbps_nominal",
                                 "kbps_measured", "delay_ms_median", "delay_ms_min", "delay_ms_max")}
        for key in METRIC_KEYS:
            row[f"{key}_mean"], row[f"{key}_ci95"], row[f"{key}_std"] = s[key]["mean"], s[key]["ci95"], s[key]["std"]
        for key in ("wer", "cer"):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = s[key]["rate"], s[key]["lo"], s[key]["hi"]
        flat.append(row)
    return flat


def write_report(result: EvalResult, output: str | os.PathLike, opts: Any | None = None) -> dict[str, Path]:
    """Write per_file.csv/json, summary.csv/json/md, probes.json, plots.png and, on a set with
    noisy inputs, enhancement_gains.csv and enhancement_by_snr.csv into ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    gains, by_snr = enhancement_gains(result), enhancement_by_snr(result)
    files = {}

    p = out / "per_file.csv"
    _write_per_file_csv(p, result.rows)
    files["per_file_csv"] = p

    p = out / "per_file.json"
    write(p, json.dumps(clean(result.rows), indent=1) + "\n")
    files["per_file_json"] = p

    p = out / "summary.json"
    payload = {"systems": summary, "probes": result.probes,
               "disentanglement": disentanglement_rows(summary, result.probes),
               "enhancement_gains": gains, "enhancement_by_snr": by_snr,
               "skipped": result.skipped, "notes": result.notes, "utterances": result.utterances}
    if opts is not None:
        payload["options"] = {k: v for k, v in vars(opts).items()}
    write(p, json.dumps(clean(payload), indent=1) + "\n")
    files["summary_json"] = p

    p = out / "summary.csv"
    write_csv(p, _flat_summary(summary))
    files["summary_csv"] = p

    for name, rows in (("enhancement_gains", gains), ("enhancement_by_snr", by_snr)):
        if rows:
            p = out / f"{name}.csv"
            write_csv(p, rows)
            files[f"{name}_csv"] = p

    p = out / "summary.md"
    write(p, markdown(result, summary, opts))
    files["summary_md"] = p

    if result.probes:
        p = out / "probes.json"
        write(p, json.dumps(clean(result.probes), indent=1) + "\n")
        files["probes_json"] = p

    files["plots_png"] = plot(summary, out / "plots.png")
    return files
