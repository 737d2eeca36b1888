#!/usr/bin/env python3
"""Compare two evaluate.py runs utterance by utterance: paired differences with 95 % intervals.

Two models measured on the same set differ by a few hundredths on most metrics, which is often
less than the spread of the per-utterance scores; a difference of means alone cannot say whether
that is a change or noise. This reads ``per_file.csv`` of a BASE and a CANDIDATE run, pairs the
rows by utterance, and prints, per system and metric, both means, the mean of
candidate - base with its Student-t 95 % interval, and on how many utterances the candidate is
lower::

    python scripts/compare_evals.py out/val_default out/val_candidate

The hasrd systems of the two runs are matched by ``n_q`` (``hasrd:A@nq3`` against
``hasrd:B@nq3``); when a run measured more than one hasrd model, name the one to use with
``--base-model`` / ``--model``. Baselines (codec2, opus, ...) are matched by name.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

DEFAULT_METRICS = ("pesq_wb", "stoi", "estoi", "mel_distance", "dnsmos_ovrl")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="the output folder of an evaluate.py run (holds per_file.csv)")
    p.add_argument("candidate", help="another run's output folder, on the same utterances")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated per_file.csv columns (default {','.join(DEFAULT_METRICS)})")
    p.add_argument("--base-model", default=None, help="the hasrd model of BASE to compare (its family, e.g. hasrd:default)")
    p.add_argument("--model", default=None, help="the hasrd model of CANDIDATE to compare")
    return p.parse_args(argv)


def read_rows(folder: str) -> list[dict]:
    path = Path(folder) / "per_file.csv"
    if not path.is_file():
        raise ValueError(f"{folder}: no per_file.csv (not an evaluate.py output folder?)")
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if not r.get("error")]


def system_labels(rows: list[dict], model: str | None, folder: str) -> dict[str, str]:
    """Map each system name of a run to the label it is matched by across runs."""
    families = sorted({r["family"] for r in rows if r["kind"] == "hasrd"})
    if model is None and len(families) > 1:
        raise ValueError(f"{folder} has several hasrd models ({', '.join(families)}); choose one with "
                         "--base-model/--model")
    if model is not None and model not in families:
        raise ValueError(f"{folder} has no hasrd model {model!r} (it has: {', '.join(families) or 'none'})")
    labels = {}
    for r in rows:
        if r["kind"] == "reference":
            continue
        if r["kind"] == "hasrd":
            if model is None or r["family"] == model:
                labels[r["system"]] = f"hasrd @nq{r['n_q']}"
        else:
            labels[r["system"]] = r["system"]
    return labels


def by_label(rows: list[dict], labels: dict[str, str]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r["system"] in labels:
            out.setdefault(labels[r["system"]], {})[r["utt"]] = r
    return out


def _number(row: dict, key: str) -> float | None:
    try:
        v = float(row.get(key, ""))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def compare(base_rows, cand_rows, metrics, base_model=None, model=None, base_name="base", cand_name="candidate"):
    """Paired comparison rows: one dict per (system label, metric) measured in both runs."""
    from hasrd.eval.report import mean_ci

    a = by_label(base_rows, system_labels(base_rows, base_model, base_name))
    b = by_label(cand_rows, system_labels(cand_rows, model, cand_name))
    shared = [k for k in a if k in b]
    if not shared:
        raise ValueError(f"{base_name} and {cand_name} have no system in common")
    out = []
    for label in shared:
        utts = [u for u in a[label] if u in b[label]]
        if not utts:
            raise ValueError(f"{label}: {base_name} and {cand_name} share no utterance")
        for key in metrics:
            pairs = [(x, y) for x, y in ((_number(a[label][u], key), _number(b[label][u], key)) for u in utts)
                     if x is not None and y is not None]
            if not pairs:
                continue
            d = mean_ci([y - x for x, y in pairs])
            out.append({"system": label, "metric": key, "n": d["n"],
                        "base": sum(x for x, _ in pairs) / len(pairs),
                        "candidate": sum(y for _, y in pairs) / len(pairs),
                        "delta": d["mean"], "ci95": d["ci95"],
                        "lower": sum(y < x for x, y in pairs)})
    if not out:
        raise ValueError(f"none of the metrics {', '.join(metrics)} is measured in both runs")
    return out


def markdown(rows) -> str:
    lines = ["| system | metric | n | base | candidate | candidate − base (95 % CI) | lower on |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ci = "" if math.isnan(r["ci95"]) else f" ± {r['ci95']:.3f}"
        lines.append(f"| {r['system']} | {r['metric']} | {r['n']} | {r['base']:.3f} | {r['candidate']:.3f} | "
                     f"{r['delta']:+.3f}{ci} | {r['lower']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    try:
        if not metrics:
            raise ValueError("--metrics is empty")
        rows = compare(read_rows(args.base), read_rows(args.candidate), metrics, args.base_model, args.model,
                       args.base, args.candidate)
    except ValueError as e:
        print(f"compare_evals: error: {e}", file=sys.stderr)
        return 2
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
