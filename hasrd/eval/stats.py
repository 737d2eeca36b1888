"""The statistics of an evaluation run: means with confidence intervals, corpus error rates with
bootstrap intervals, one summary per system, the disentanglement rows of the probes and, on a set
with noisy inputs, the enhancement gains over the ``input`` row."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .options import METRIC_KEYS, EvalResult

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
