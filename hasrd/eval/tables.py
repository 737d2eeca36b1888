"""The markdown summary of an evaluation run (``summary.md``, also printed): the systems table and
the sections on enhancement gains, disentanglement probes, skipped items and errors."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .options import EvalResult
from .output import cell
from .stats import GAIN_COLUMNS, SNR_COLUMNS, disentanglement_rows, enhancement_by_snr, enhancement_gains

# (key, column title, format) of the markdown summary; WER/CER are corpus-level percentages.
TABLE_COLUMNS = (
    ("pesq_wb", "PESQ-wb", "{:.2f}"), ("pesq_nb", "PESQ-nb", "{:.2f}"), ("stoi", "STOI", "{:.3f}"),
    ("estoi", "ESTOI", "{:.3f}"), ("si_sdr", "SI-SDR dB", "{:.1f}"), ("mel_distance", "mel L1", "{:.3f}"),
    ("f0_cents", "F0 err c", "{:.0f}"), ("vuv_error", "V/UV err %", "{:.1f}"),
    ("dnsmos_ovrl", "DNSMOS OVRL", "{:.2f}"), ("mos_hook", "MOS (hook)", "{:.2f}"),
    ("wer", "WER %", "{:.1f}"), ("cer", "CER %", "{:.1f}"), ("spk_sim", "spk sim", "{:.3f}"),
)


def _has(summary: list[dict], key: str) -> bool:
    if key in ("wer", "cer"):
        return any(np.isfinite(s[key]["rate"]) for s in summary)
    return any(s[key]["n"] > 0 for s in summary)


def _num(v: float, fmt: str = "{:.2f}") -> str:
    return fmt.format(v) if v is not None and np.isfinite(v) else "-"


def _delta(value: float, ci: float, fmt: str) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    text = fmt.replace("{:", "{:+").format(value)
    if float(text) == 0:  # no "-0.00"
        text = "+" + text[1:]
    return text + (" ± " + fmt.format(ci) if ci is not None and np.isfinite(ci) else "")


def _snr_label(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _pct(v: float | None) -> str:
    return _num(100 * v if v is not None and np.isfinite(v) else math.nan, "{:.1f}")


def _table_head(head: list[str]) -> list[str]:
    """The header line and the alignment line of a table: the first column left, the others right."""
    return ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]


def enhancement_markdown(gains: list[dict], by_snr: list[dict]) -> list[str]:
    """The lines of the "Enhancement gains over the noisy input" section (none if both are empty)."""
    if not gains and not by_snr:
        return []
    lines = ["", "## Enhancement gains over the noisy input", "",
             "Each system against the `input` row (the noisy audio, scored against the clean reference) "
             "over the same utterances: the system's mean, and Δ = system − input, the mean of the "
             "per-utterance differences ± 95% CI half-width (Student t).", ""]
    if gains:
        lines += _gains_table(gains)
    if by_snr:
        lines += ["", "By input SNR (mean; in parentheses Δ over the input at that SNR):", ""]
        lines += _snr_table(by_snr)
    return lines


def _gains_table(gains: list[dict]) -> list[str]:
    cols = [c for c in GAIN_COLUMNS if any(g[f"{c[0]}_n"] > 0 for g in gains)]
    lines = _table_head(["system", "n"] + [t for _, title, _ in cols for t in (title, f"Δ {title}")])
    for g in gains:
        cells = [g["system"], str(g["utterances"])]
        for key, _, fmt in cols:
            cells += [_num(g[key], fmt), _delta(g[f"{key}_delta"], g[f"{key}_delta_ci95"], fmt)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _snr_table(by_snr: list[dict]) -> list[str]:
    cols = [c for c in SNR_COLUMNS if any(np.isfinite(g[c[0]]) for g in by_snr)]
    lines = _table_head(["system", "SNR dB", "n"] + [title for _, title, _ in cols])
    for g in by_snr:
        cells = [g["system"], _snr_label(g["snr"]), str(g["utterances"])]
        for key, _, fmt in cols:
            text = _num(g[key], fmt)
            if f"{key}_delta" in g and text != "-":
                text += f" ({_delta(g[f'{key}_delta'], None, fmt)})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(result: EvalResult, summary: list[dict], opts: Any | None = None) -> str:
    """The text of ``summary.md`` (``opts``, where given, adds a line naming the judges)."""
    lines = _intro(result, opts)
    lines += _systems_table(summary)
    lines += enhancement_markdown(enhancement_gains(result), enhancement_by_snr(result))
    if result.probes:
        lines += probes_markdown(summary, result.probes)
    lines += _skipped_and_errors(result, summary)
    lines.append("")
    return "\n".join(lines)


def _intro(result: EvalResult, opts: Any | None) -> list[str]:
    """The title, what was measured and how, and the judges."""
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
    return lines


def _systems_table(summary: list[dict]) -> list[str]:
    """One row per system: bitrates, delay and every metric any system has."""
    cols = [c for c in TABLE_COLUMNS if _has(summary, c[0])]
    lines = _table_head(["system", "n", "kbps nominal", "kbps measured", "delay ms"] + [c[1] for c in cols])
    for s in summary:
        delay = _num(s["delay_ms_median"], "{:.1f}")
        lo, hi = _num(s["delay_ms_min"], "{:.1f}"), _num(s["delay_ms_max"], "{:.1f}")
        if lo != hi:
            delay += f" ({lo}..{hi})"
        cells = [s["name"], str(s["utterances"]), _num(s["kbps_nominal"], "{:.3g}"),
                 _num(s["kbps_measured"], "{:.3g}"), delay]
        cells += [cell(s[k], k, f) for k, _, f in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def probes_markdown(summary: list[dict], probes: dict) -> list[str]:
    """The lines of the "Semantic/acoustic disentanglement" section: per model, then per codebook."""
    lines = ["", "## Semantic/acoustic disentanglement", "",
             "Content and speaker identity from codebook 1 alone (`n_q` low) against all "
             "requested codebooks (`n_q` high); PNMI of codebook 1 against forced-aligned "
             "phones (chance = same codes shuffled), and the mean PNMI of the acoustic codebooks.", ""]
    lines.append("| model | n_q low→high | WER % low | WER % high | CER % low | CER % high | "
                 "spk sim low | spk sim high | PNMI cb1 (chance) | PNMI acoustic mean |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in disentanglement_rows(summary, probes):
        lines.append(
            f"| {r['model']} | {r['n_q_low']}→{r['n_q_high']} | {_pct(r['wer_low'])} | {_pct(r['wer_high'])} | "
            f"{_pct(r['cer_low'])} | {_pct(r['cer_high'])} | {_num(r['spk_sim_low'], '{:.3f}')} | "
            f"{_num(r['spk_sim_high'], '{:.3f}')} | {_num(r['pnmi_cb1'], '{:.3f}')} "
            f"({_num(r['pnmi_cb1_chance'], '{:.3f}')}) | {_num(r['pnmi_acoustic_mean'], '{:.3f}')} |")
    lines += ["", "Per codebook (silence frames excluded):", "",
              "| model | codebook | role | PNMI | PNMI chance | phone purity | purity chance | codes used | frames |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for family, p in probes.items():
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
    return lines


def _skipped_and_errors(result: EvalResult, summary: list[dict]) -> list[str]:
    """The "Skipped" and "Errors" sections, each only where it has something to say."""
    lines = []
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
    return lines
