"""Summaries, tables, files and plots of an evaluation run."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .run import METRIC_KEYS, EvalResult

ROW_KEYS = ("utt", "system", "family", "kind", "n_q", "duration", "bitrate_nominal", "bitrate_measured",
            "payload_bytes", "delay_ms", *METRIC_KEYS, "wer", "cer", "word_edits", "ref_words",
            "char_edits", "ref_chars", "ref_text", "hyp", "error")

# (key, column title, format) of the markdown summary; WER/CER are corpus-level percentages.
TABLE_COLUMNS = (
    ("pesq_wb", "PESQ-wb", "{:.2f}"), ("pesq_nb", "PESQ-nb", "{:.2f}"), ("stoi", "STOI", "{:.3f}"),
    ("estoi", "ESTOI", "{:.3f}"), ("si_sdr", "SI-SDR dB", "{:.1f}"), ("mel_distance", "mel L1", "{:.3f}"),
    ("f0_cents", "F0 err c", "{:.0f}"), ("vuv_error", "V/UV err %", "{:.1f}"),
    ("dnsmos_ovrl", "DNSMOS OVRL", "{:.2f}"), ("mos_hook", "MOS (hook)", "{:.2f}"),
    ("wer", "WER %", "{:.1f}"), ("cer", "CER %", "{:.1f}"), ("spk_sim", "spk sim", "{:.3f}"),
)

# (key, column title, format) of the speech-enhancement tables (sets with a noisy ``input`` row).
GAIN_COLUMNS = (("pesq_wb", "PESQ-wb", "{:.2f}"), ("stoi", "STOI", "{:.3f}"), ("si_sdr", "SI-SDR dB", "{:.1f}"),
                ("dnsmos_ovrl", "DNSMOS OVRL", "{:.2f}"))
SNR_COLUMNS = tuple(c for c in GAIN_COLUMNS if c[0] != "si_sdr")


def _finite(values) -> np.ndarray:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return a[np.isfinite(a)]


def mean_ci(values, confidence: float = 0.95) -> dict:
    """Mean, sample std and the half-width of a Student-t confidence interval of the mean."""
    a = _finite(values)
    n = int(a.size)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": math.nan, "n": 0}
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    if n > 1:
        from scipy.stats import t

        half = float(t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    else:
        half = math.nan
    return {"mean": float(a.mean()), "std": std, "ci95": half, "n": n}


def corpus_rate(edits: list[int], totals: list[int], boot: int = 1000, seed: int = 0) -> dict:
    """Corpus error rate sum(edits)/sum(totals) and a 95% bootstrap interval over utterances."""
    e = np.asarray(edits, dtype=np.float64)
    t = np.asarray(totals, dtype=np.float64)
    if e.size == 0 or t.sum() == 0:
        return {"rate": math.nan, "lo": math.nan, "hi": math.nan, "n": int(e.size)}
    rate = float(e.sum() / t.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, e.size, size=(boot, e.size))
    tt = t[idx].sum(axis=1)
    samples = np.where(tt > 0, e[idx].sum(axis=1) / np.maximum(tt, 1), np.nan)
    lo, hi = np.nanpercentile(samples, [2.5, 97.5])
    return {"rate": rate, "lo": float(lo), "hi": float(hi), "n": int(e.size)}


def summarize(result: EvalResult) -> list[dict]:
    """One summary dict per system, in run order."""
    out = []
    for info in result.systems:
        rows = [r for r in result.rows if r["system"] == info["name"]]
        ok = [r for r in rows if "payload_bytes" in r]
        dur = sum(r["duration"] for r in ok)
        s: dict[str, Any] = dict(info)
        s["utterances"] = len(ok)
        s["failed"] = len(rows) - len(ok)
        s["kbps_nominal"] = info["bitrate_nominal"] / 1000.0
        s["kbps_measured"] = (8.0 * sum(r["payload_bytes"] for r in ok) / dur / 1000.0) if dur > 0 else math.nan
        delays = _finite(r.get("delay_ms") for r in ok)
        s["delay_ms_median"] = float(np.median(delays)) if delays.size else math.nan
        s["delay_ms_min"] = float(delays.min()) if delays.size else math.nan
        s["delay_ms_max"] = float(delays.max()) if delays.size else math.nan
        for key in METRIC_KEYS:
            s[key] = mean_ci(r.get(key) for r in ok)
        scored = [r for r in ok if r.get("ref_words") is not None]
        s["wer"] = corpus_rate([r["word_edits"] for r in scored], [r["ref_words"] for r in scored])
        s["cer"] = corpus_rate([r["char_edits"] for r in scored], [r["ref_chars"] for r in scored])
        out.append(s)
    return out


def _has(summary: list[dict], key: str) -> bool:
    if key in ("wer", "cer"):
        return any(np.isfinite(s[key]["rate"]) for s in summary)
    return any(s[key]["n"] > 0 for s in summary)


def _cell(stat: dict | None, key: str, fmt: str) -> str:
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


def _num(v: float, fmt: str = "{:.2f}") -> str:
    return fmt.format(v) if v is not None and np.isfinite(v) else "-"


def disentanglement_rows(summary: list[dict], probes: dict) -> list[dict]:
    """Per hasrd model: content and speaker at the lowest vs highest n_q, and codebook-1 PNMI."""
    out = []
    by_name = {s["name"]: s for s in summary}
    for family, p in probes.items():
        lo, hi = p.get("n_q_low"), p.get("n_q_high")
        s_lo, s_hi = by_name.get(f"{family}@nq{lo}"), by_name.get(f"{family}@nq{hi}")
        cbs = p.get("codebooks", [])
        cb1 = cbs[0] if cbs else {}
        others = [c for c in cbs[p.get("num_semantic_codebooks", 1):]]
        row = {"model": family, "n_q_low": lo, "n_q_high": hi}
        for tag, s in (("low", s_lo), ("high", s_hi)):
            row[f"wer_{tag}"] = s["wer"]["rate"] if s else math.nan
            row[f"cer_{tag}"] = s["cer"]["rate"] if s else math.nan
            row[f"spk_sim_{tag}"] = s["spk_sim"]["mean"] if s else math.nan
        row["pnmi_cb1"] = cb1.get("pnmi", math.nan)
        row["pnmi_cb1_chance"] = cb1.get("pnmi_shuffled", math.nan)
        row["pnmi_acoustic_mean"] = float(np.mean([c["pnmi"] for c in others])) if others else math.nan
        out.append(row)
    return out


# ---- speech enhancement ---------------------------------------------------------------------------


def _input_name(result: EvalResult) -> str | None:
    """The name of the noisy ``input`` system, if the run has one."""
    return next((s["name"] for s in result.systems if s["kind"] == "input"), None)


def _ok_rows(result: EvalResult, name: str) -> list[dict]:
    return [r for r in result.rows if r["system"] == name and "payload_bytes" in r]


def _value(row: dict, key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float, np.number)) and math.isfinite(v) else None


def paired_gains(rows: list[dict], base: dict[str, dict], keys) -> dict:
    """Means of ``keys`` over ``rows`` and their gains over ``base`` (the input's row of each
    utterance), paired by utterance: for each key, ``KEY`` (system mean), ``KEY_input`` (input
    mean over the same utterances), ``KEY_delta`` (mean of system - input), ``KEY_delta_ci95``
    (Student-t half-width) and ``KEY_n`` (utterances where both values exist)."""
    out: dict[str, Any] = {}
    for key in keys:
        pairs = []
        for r in rows:
            a, b = _value(r, key), _value(base.get(r["utt"], {}), key)
            if a is not None and b is not None:
                pairs.append((a, b))
        d = mean_ci([a - b for a, b in pairs])
        out[key] = float(np.mean([a for a, _ in pairs])) if pairs else math.nan
        out[f"{key}_input"] = float(np.mean([b for _, b in pairs])) if pairs else math.nan
        out[f"{key}_delta"], out[f"{key}_delta_ci95"], out[f"{key}_n"] = d["mean"], d["ci95"], d["n"]
    return out


def enhancement_gains(result: EvalResult) -> list[dict]:
    """Per system (all but ``input`` and ``reference``): mean PESQ-wb, STOI, SI-SDR and DNSMOS
    OVRL and the gain over the noisy input (:func:`paired_gains`). Empty without an input row."""
    inp = _input_name(result)
    if inp is None:
        return []
    base = {r["utt"]: r for r in _ok_rows(result, inp)}
    out = []
    for info in result.systems:
        if info["kind"] in ("input", "reference"):
            continue
        rows = _ok_rows(result, info["name"])
        g = {"system": info["name"], "family": info["family"], "kind": info["kind"],
             "kbps_nominal": info["bitrate_nominal"] / 1000.0, "utterances": sum(r["utt"] in base for r in rows)}
        g.update(paired_gains(rows, base, [k for k, _, _ in GAIN_COLUMNS]))
        out.append(g)
    return out


def _snr_order(value) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def enhancement_by_snr(result: EvalResult) -> list[dict]:
    """Per system (the input included, the reference not) and SNR (the manifest's ``snr``): mean
    PESQ-wb, STOI and DNSMOS OVRL, with gains over the input (:func:`paired_gains`) for the
    other systems. Empty without an input row or without ``snr`` in the rows."""
    inp = _input_name(result)
    if inp is None or not any(r.get("snr") is not None for r in result.rows):
        return []
    base = {r["utt"]: r for r in _ok_rows(result, inp)}
    keys = [k for k, _, _ in SNR_COLUMNS]
    out = []
    for info in result.systems:
        if info["kind"] == "reference":
            continue
        rows = _ok_rows(result, info["name"])
        for snr in sorted({r.get("snr") for r in rows if r.get("snr") is not None}, key=_snr_order):
            group = [r for r in rows if r.get("snr") == snr]
            g = {"system": info["name"], "family": info["family"], "kind": info["kind"], "snr": snr,
                 "utterances": len(group)}
            if info["kind"] == "input":
                g.update({k: mean_ci(_value(r, k) for r in group)["mean"] for k in keys})
            else:
                g.update(paired_gains(group, base, keys))
            out.append(g)
    return out


def _delta(value: float, ci: float, fmt: str) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    text = fmt.replace("{:", "{:+").format(value)
    if float(text) == 0:  # no "-0.00"
        text = "+" + text[1:]
    return text + (" ± " + fmt.format(ci) if ci is not None and np.isfinite(ci) else "")


def _snr_label(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def enhancement_markdown(gains: list[dict], by_snr: list[dict]) -> list[str]:
    """The lines of the "Enhancement gains over the noisy input" section (none if both are empty)."""
    if not gains and not by_snr:
        return []
    lines = ["", "## Enhancement gains over the noisy input", "",
             "Each system against the `input` row (the noisy audio, scored against the clean reference) "
             "over the same utterances: the system's mean, and Δ = system − input, the mean of the "
             "per-utterance differences ± 95% CI half-width (Student t).", ""]
    if gains:
        cols = [c for c in GAIN_COLUMNS if any(g[f"{c[0]}_n"] > 0 for g in gains)]
        head = ["system", "n"] + [t for _, title, _ in cols for t in (title, f"Δ {title}")]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for g in gains:
            cells = [g["system"], str(g["utterances"])]
            for key, _, fmt in cols:
                cells += [_num(g[key], fmt), _delta(g[f"{key}_delta"], g[f"{key}_delta_ci95"], fmt)]
            lines.append("| " + " | ".join(cells) + " |")
    if by_snr:
        cols = [c for c in SNR_COLUMNS if any(np.isfinite(g[c[0]]) for g in by_snr)]
        lines += ["", "By input SNR (mean; in parentheses Δ over the input at that SNR):", ""]
        head = ["system", "SNR dB", "n"] + [title for _, title, _ in cols]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for g in by_snr:
            cells = [g["system"], _snr_label(g["snr"]), str(g["utterances"])]
            for key, _, fmt in cols:
                cell = _num(g[key], fmt)
                if f"{key}_delta" in g and cell != "-":
                    cell += f" ({_delta(g[f'{key}_delta'], None, fmt)})"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(result: EvalResult, summary: list[dict], opts: Any | None = None) -> str:
    lines = ["# hasrd evaluation", ""]
    total = sum(u["duration"] for u in result.utterances)
    with_text = sum(1 for u in result.utterances if u["text"])
    lines.append(f"{len(result.utterances)} utterances, {total:.1f} s, {with_text} with transcripts. "
                 "All metrics at 16 kHz after removing each system's measured delay. "
                 "Values: mean ± 95% CI half-width (Student t) over utterances; WER/CER: corpus "
                 "rate [95% bootstrap interval].")
    if opts is not None:
        lines.append("")
        lines.append(f"Judges: ASR `{opts.asr}`, speaker `{opts.speaker}`, MOS `{opts.mos}`"
                     + (f", MOS hook `{opts.mos_hook}`" if opts.mos_hook else "") + ".")
    lines.append("")
    cols = [c for c in TABLE_COLUMNS if _has(summary, c[0])]
    head = ["system", "n", "kbps nominal", "kbps measured", "delay ms"] + [c[1] for c in cols]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for s in summary:
        delay = _num(s["delay_ms_median"], "{:.1f}")
        lo, hi = _num(s["delay_ms_min"], "{:.1f}"), _num(s["delay_ms_max"], "{:.1f}")
        if lo != hi:
            delay += f" ({lo}..{hi})"
        cells = [s["name"], str(s["utterances"]), _num(s["kbps_nominal"], "{:.3g}"),
                 _num(s["kbps_measured"], "{:.3g}"), delay]
        cells += [_cell(s[k], k, f) for k, _, f in cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines += enhancement_markdown(enhancement_gains(result), enhancement_by_snr(result))
    if result.probes:
        lines += ["", "## Semantic/acoustic disentanglement", "",
                  "Content and speaker identity from codebook 1 alone (`n_q` low) against all "
                  "requested codebooks (`n_q` high); PNMI of codebook 1 against forced-aligned "
                  "phones (chance = same codes shuffled), and the mean PNMI of the acoustic codebooks.", ""]
        lines.append("| model | n_q low→high | WER % low | WER % high | CER % low | CER % high | "
                     "spk sim low | spk sim high | PNMI cb1 (chance) | PNMI acoustic mean |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in disentanglement_rows(summary, result.probes):
            pct = lambda v: _num(100 * v if v is not None and np.isfinite(v) else math.nan, "{:.1f}")  # noqa: E731
            lines.append(
                f"| {r['model']} | {r['n_q_low']}→{r['n_q_high']} | {pct(r['wer_low'])} | {pct(r['wer_high'])} | "
                f"{pct(r['cer_low'])} | {pct(r['cer_high'])} | {_num(r['spk_sim_low'], '{:.3f}')} | "
                f"{_num(r['spk_sim_high'], '{:.3f}')} | {_num(r['pnmi_cb1'], '{:.3f}')} "
                f"({_num(r['pnmi_cb1_chance'], '{:.3f}')}) | {_num(r['pnmi_acoustic_mean'], '{:.3f}')} |")
        lines += ["", "Per codebook (silence frames excluded):", "",
                  "| model | codebook | role | PNMI | PNMI chance | phone purity | purity chance | codes used | frames |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for family, p in result.probes.items():
            for c in p.get("codebooks", []):
                role = "semantic" if c["codebook"] <= p.get("num_semantic_codebooks", 1) else "acoustic"
                lines.append(
                    f"| {family} | {c['codebook']} | {role} | {_num(c['pnmi'], '{:.3f}')} | "
                    f"{_num(c['pnmi_shuffled'], '{:.3f}')} | {_num(c['purity'], '{:.3f}')} | "
                    f"{_num(c['purity_shuffled'], '{:.3f}')} | {c['codes_used']} | {c['frames']} |")
            if p.get("alignment_failures"):
                lines.append("")
                lines.append(f"{family}: not aligned: " + "; ".join(
                    f"{k} ({v})" for k, v in sorted(p["alignment_failures"].items())))
    if result.skipped or result.notes:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s}" for s in result.skipped]
        lines += [f"- note: {n}" for n in result.notes]
    failed = [s for s in summary if s["failed"]]
    errors: dict[str, list[str]] = {}
    for r in result.rows:
        if r.get("error"):
            errors.setdefault(r["system"], []).append(r["error"])
    if failed or errors:
        lines += ["", "## Errors", ""]
        for s in failed:
            lines.append(f"- {s['name']}: failed to code {s['failed']} utterances")
        for name, msgs in errors.items():
            lines.append(f"- {name}: {len(msgs)} rows with errors, first: {msgs[0]}")
    lines.append("")
    return "\n".join(lines)


PLOT_PANELS = (("wer", "WER (%)"), ("dnsmos_ovrl", "DNSMOS OVRL"), ("pesq_wb", "PESQ (wide-band)"), ("stoi", "STOI"))


def plot(summary: list[dict], path: str | os.PathLike) -> Path:
    """One PNG, four panels (WER, DNSMOS, PESQ-wb, STOI against nominal kbps), a line per family."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    families: dict[str, list[dict]] = {}
    for s in summary:
        if s["kind"] not in ("reference", "input"):
            families.setdefault(s["family"], []).append(s)
    hlines = [(s, label, style) for kind, label, style in (("reference", "reference (original)", "--"),
                                                           ("input", "input (noisy)", ":"))
              for s in summary if s["kind"] == kind]
    markers = "osD^vP*Xh<>"
    for ax, (key, title) in zip(axes.ravel(), PLOT_PANELS):
        for i, (fam, items) in enumerate(sorted(families.items())):
            items = sorted(items, key=lambda s: s["kbps_nominal"])
            xs, ys, es = [], [], []
            for s in items:
                if key in ("wer", "cer"):
                    st = s[key]
                    y = 100 * st["rate"]
                    err = [100 * (st["rate"] - st["lo"]), 100 * (st["hi"] - st["rate"])]
                else:
                    st = s[key]
                    y = st["mean"]
                    e = st["ci95"] if np.isfinite(st["ci95"]) else 0.0
                    err = [e, e]
                if np.isfinite(y) and s["kbps_nominal"] > 0:  # log axis: a 0 bit/s enhancer has no point
                    xs.append(s["kbps_nominal"])
                    ys.append(y)
                    es.append(err)
            if xs:
                ax.errorbar(xs, ys, yerr=np.asarray(es).T, marker=markers[i % len(markers)], capsize=3, label=fam)
        for ref, label, style in hlines:
            y = 100 * ref[key]["rate"] if key in ("wer", "cer") else ref[key]["mean"]
            if np.isfinite(y):
                ax.axhline(y, color="0.4", linestyle=style, linewidth=1, label=label)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("nominal bitrate (kbit/s)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=min(5, len(handles)))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_csv(path: Path, rows: list[dict]) -> None:
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


def write_report(result: EvalResult, output: str | os.PathLike, opts: Any | None = None) -> dict[str, Path]:
    """Write per_file.csv/json, summary.csv/json/md, probes.json, plots.png and, on a set with
    noisy inputs, enhancement_gains.csv and enhancement_by_snr.csv into ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    gains, by_snr = enhancement_gains(result), enhancement_by_snr(result)
    files = {}

    extra = sorted({k for r in result.rows for k in r} - set(ROW_KEYS))
    keys = list(ROW_KEYS) + extra
    p = out / "per_file.csv"
    with open(p.with_name(".per_file.csv.tmp"), "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in result.rows:
            w.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                            else r[k]) for k in keys})
    os.replace(p.with_name(".per_file.csv.tmp"), p)
    files["per_file_csv"] = p

    p = out / "per_file.json"
    _write(p, json.dumps(_clean(result.rows), indent=1) + "\n")
    files["per_file_json"] = p

    p = out / "summary.json"
    payload = {"systems": summary, "probes": result.probes,
               "disentanglement": disentanglement_rows(summary, result.probes),
               "enhancement_gains": gains, "enhancement_by_snr": by_snr,
               "skipped": result.skipped, "notes": result.notes, "utterances": result.utterances}
    if opts is not None:
        payload["options"] = {k: v for k, v in vars(opts).items()}
    _write(p, json.dumps(_clean(payload), indent=1) + "\n")
    files["summary_json"] = p

    flat = []
    for s in summary:
        row = {k: s[k] for k in ("name", "family", "kind", "n_q", "utterances", "failed", "kbps_nominal",
                                 "kbps_measured", "delay_ms_median", "delay_ms_min", "delay_ms_max")}
        for key in METRIC_KEYS:
            row[f"{key}_mean"], row[f"{key}_ci95"], row[f"{key}_std"] = s[key]["mean"], s[key]["ci95"], s[key]["std"]
        for key in ("wer", "cer"):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = s[key]["rate"], s[key]["lo"], s[key]["hi"]
        flat.append(row)
    p = out / "summary.csv"
    _write_csv(p, flat)
    files["summary_csv"] = p

    for name, rows in (("enhancement_gains", gains), ("enhancement_by_snr", by_snr)):
        if rows:
            p = out / f"{name}.csv"
            _write_csv(p, rows)
            files[f"{name}_csv"] = p

    p = out / "summary.md"
    _write(p, markdown(result, summary, opts))
    files["summary_md"] = p

    if result.probes:
        p = out / "probes.json"
        _write(p, json.dumps(_clean(result.probes), indent=1) + "\n")
        files["probes_json"] = p

    files["plots_png"] = plot(summary, out / "plots.png")
    return files
