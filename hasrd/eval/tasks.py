"""Evaluating the token LM's tasks: ``evaluate.py --lm DIR --data TASKS.jsonl`` (docs/lm.md).

The set is a task manifest of :mod:`hasrd.lm.recipe` (rows with ``task``, ``input``, ``target``
and, by task, ``target2``, ``ref``, ``query``, ``text``/``text2``), made from evaluation speech
with ``--each`` (and ``--vc-unpaired`` for vc without parallel sentences). Every system processes
the row's ``input`` and is scored by the evaluator's own :func:`hasrd.eval.worker.score_job` (same
judges, same worker pool) against the row's target:

* ``input``: the mixture / noisy / source audio itself, the floor;
* ``target-tokens``: the target coded by the LM's codec at the LM's ``n_q`` (the ceiling of any
  LM that outputs those tokens; rows with a target only);
* ``lm`` (one per ``--lm``, ``lm2``, ...): sampled with seed 0 (``--lm-greedy``: also a
  ``lm-greedy`` row);
* on ``se`` rows only: every ``--enhancer`` and the ``--baselines`` (spectral gating).

Scoring by task: SI-SDR, STOI, PESQ against the target; WER against the target's transcript;
speaker similarity to the target (``tse``, ``se``, ``ss``) or to the ref clip (``vc``). ``ss`` is
scored permutation-invariantly: of the two ways to pair the two outputs with the two sources, the
one with the larger summed SI-SDR is kept, and each source is one scored item. A ``vc`` row
without a target gets WER (against the source's words), DNSMOS and similarity to the ref only. A
``lass`` row whose query keeps a noise is scored on the fidelity metrics only.

Results are grouped by ``task`` (``lass-speech`` and ``lass-noise`` apart) in
``OUTPUT/task_summary.md``, ``task_summary.csv``, ``task_rows.csv``, ``tasks.json`` and a figure
``tasks.png``.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import EVAL_SR, si_sdr
from .options import EvalError, EvalOptions
from .output import cell, clean, say, warn_once, write, write_csv
from .resolve import baseline_systems, check_judges, enhancer_systems
from .stats import corpus_rate, mean_ci
from .worker import make_pool, score_job

#: (key, column title, format) of the per-task tables
TASK_COLUMNS = (("si_sdr", "SI-SDR dB", "{:.1f}"), ("stoi", "STOI", "{:.3f}"), ("pesq_wb", "PESQ-wb", "{:.2f}"),
                ("dnsmos_ovrl", "DNSMOS OVRL", "{:.2f}"), ("wer", "WER %", "{:.1f}"), ("spk_sim", "spk sim", "{:.3f}"))
GROUP_ORDER = ("se", "tse", "ss", "vc", "lass-speech", "lass-noise")


class _LMSystem:
    def __init__(self, lm, name: str, greedy: bool, path: str):
        self.lm, self.name, self.greedy, self.path = lm, name, greedy, path
        self.kind = "lm"

    def outputs(self, task: str, x: np.ndarray, ref: np.ndarray | None, query: str | None) -> list[np.ndarray]:
        import torch

        from .systems import from_model, to_model

        sr = self.lm.sample_rate
        wav, n = to_model(x, EVAL_SR, sr)
        r = None if ref is None else to_model(ref, EVAL_SR, sr)[0]
        hop = self.lm.codec.hop_length
        frames = -(-n // hop)
        with torch.inference_mode():
            ys = self.lm.generate(task, wav, ref=r, query=query, n_frames=frames, greedy=self.greedy, seed=0)
        return [from_model(y, sr, n, EVAL_SR, x.size) for y in ys]


def _load_lms(specs: list[str], greedy: bool) -> list[_LMSystem]:
    from hasrd.lm import load_codec_lm

    out = []
    for i, spec in enumerate(specs):
        try:
            lm = load_codec_lm(spec)
        except (OSError, ValueError) as exc:
            raise EvalError(f"--lm {spec}: {' '.join(str(exc).split())}") from None
        name = "lm" if i == 0 else f"lm{i + 1}"
        out.append(_LMSystem(lm, name, False, str(spec)))
        if greedy:
            out.append(_LMSystem(lm, f"{name}-greedy", True, str(spec)))
    return out


def _target_tokens(lm, audio: np.ndarray) -> np.ndarray:
    """``audio`` coded by the LM's codec at its ``n_q`` (the LM's ceiling)."""
    import torch

    from .systems import from_model, to_model

    codec = lm.codec
    wav, n = to_model(audio, EVAL_SR, codec.sample_rate)
    with torch.inference_mode():
        y = codec.decode(codec.encode(wav, n_q=int(lm.settings["n_q"])))
    return from_model(y, codec.sample_rate, n, EVAL_SR, audio.size)


def read_task_rows(manifest: str | Path, limit: int | None = None) -> list[dict]:
    """The rows of a task manifest with their audio loaded at 16 kHz (``input``, ``target``, ...)."""
    from hasrd.io.audio import load_audio

    path = Path(manifest)
    if not path.is_file():
        raise EvalError(f"--data {manifest}: no such task manifest (make one with python -m hasrd.lm.recipe --each)")
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or "task" not in row or "input" not in row:
                    raise ValueError
            except ValueError:
                raise EvalError(f"--data {manifest}:{lineno}: not a task row (a JSON object with task and input)") from None
            for role in ("input", "target", "target2", "ref"):
                if row.get(role):
                    p = Path(row[role])
                    p = p if p.is_absolute() else path.parent / p
                    try:
                        row[f"{role}_audio"] = load_audio(p, sample_rate=EVAL_SR, mono=True)[0][0]
                    except (OSError, ValueError) as exc:
                        raise EvalError(f"--data {manifest}:{lineno}: {role} {p}: {exc}") from None
            rows.append(row)
    if not rows:
        raise EvalError(f"--data {manifest}: no rows")
    return rows[:limit] if limit is not None else rows


def pit_order(targets: list[np.ndarray], outputs: list[np.ndarray]) -> list[np.ndarray]:
    """The two ``outputs`` in the order that pairs them best with the two ``targets`` (the larger
    summed SI-SDR): permutation-invariant scoring of separation."""
    straight = si_sdr(targets[0], outputs[0]) + si_sdr(targets[1], outputs[1])
    swapped = si_sdr(targets[0], outputs[1]) + si_sdr(targets[1], outputs[0])
    return [outputs[1], outputs[0]] if swapped > straight else list(outputs)


def _group(row: dict) -> str:
    if row["task"] == "lass":
        return "lass-speech" if row.get("keep", "speech") == "speech" else "lass-noise"
    return row["task"]


def run_task_evaluation(opts: EvalOptions, lm_specs: list[str], greedy: bool = False) -> dict:
    """Every system on every row, scored; returns ``{"rows": [...], "systems": [...], "skipped": [...]}``."""
    specs, rows, lms, se_systems, skipped = _prepare(opts, lm_specs, greedy)
    for line in skipped:
        say(line)
    out_rows = _score_rows(opts, specs, rows, lms, se_systems)
    systems = ["input", "target-tokens", *(s.name for s in lms), *(s.name for s in se_systems)]
    return {"rows": out_rows, "systems": systems, "skipped": skipped,
            "lm": [{"name": s.name, "path": s.path, "greedy": s.greedy, "tasks": s.lm.tasks,
                    "codec": str(s.lm.settings["codec"]), "n_q": int(s.lm.settings["n_q"])} for s in lms]}


def _prepare(opts: EvalOptions, lm_specs: list[str], greedy: bool) -> tuple[dict, list[dict], list[_LMSystem], list, list[str]]:
    """``(judge specs, task rows, LM systems, the se rows' other systems, skip lines)``; an
    :class:`EvalError` for options that do not fit a task manifest."""
    if opts.models:
        raise EvalError("--lm evaluates task manifests; --model (codec rows) does not apply to them")
    specs, skipped = check_judges(opts)
    rows = read_task_rows(opts.data, opts.limit) if opts.data else None
    if rows is None:
        raise EvalError("--lm needs --data TASKS.jsonl (python -m hasrd.lm.recipe --each)")
    lms = _load_lms(lm_specs, greedy)
    se_systems = enhancer_systems(opts.enhancers, {"input", "target-tokens", *(s.name for s in lms)})
    baselines, skips = baseline_systems(opts.baselines)
    se_systems += baselines
    skipped += skips
    known = set(lms[0].lm.tasks)
    for other in lms[1:]:
        known &= set(other.lm.tasks)
    unknown = sorted({r["task"] for r in rows} - known)
    if unknown:
        raise EvalError(f"--data has {', '.join(unknown)} rows, which the LM(s) were not trained on "
                        f"(they know {', '.join(sorted(known))})")
    return specs, rows, lms, se_systems, skipped


def _score_rows(opts: EvalOptions, specs: dict, rows: list[dict], lms: list[_LMSystem], se_systems: list) -> list[dict]:
    """Every system's outputs of every row, scored by the judges' pool: one result row per output."""
    from tqdm import tqdm

    pool = make_pool(specs, int(opts.jobs))
    pending: list[tuple[dict, Any]] = []
    failed: set[str] = set()
    bar = tqdm(total=len(rows), desc="tasks", unit="row", disable=not opts.progress, file=sys.stderr)
    try:
        for row in rows:
            outputs = _row_outputs(row, lms, se_systems, failed)
            pending += _submit_outputs(opts, pool, row, outputs)
            bar.update(1)
        out_rows = []
        for base, fut in pending:
            r = dict(base)
            r.update(fut.result())
            out_rows.append(r)
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
    return out_rows


def _targets(row: dict) -> list[np.ndarray]:
    return [row[k] for k in ("target_audio", "target2_audio") if k in row]


def _row_outputs(row: dict, lms: list[_LMSystem], se_systems: list, failed: set[str]) -> dict[str, list[np.ndarray]]:
    """system name -> its outputs for ``row`` (a system that fails on it has none; a warning the
    first time)."""
    task, x = row["task"], row["input_audio"]
    targets = _targets(row)
    ref = row.get("ref_audio")
    outputs: dict[str, list[np.ndarray]] = {"input": [x] * max(1, len(targets))}
    if targets:
        outputs["target-tokens"] = [_target_tokens(lms[0].lm, t) for t in targets]
    for s in lms:
        try:
            outputs[s.name] = s.outputs(task, x, ref, row.get("query"))
        except Exception as exc:
            warn_once(failed, s.name, row["id"], exc)
    if task == "se":
        for s in se_systems:
            try:
                outputs[s.name] = [np.asarray(s.process(x, EVAL_SR)[0], np.float32).reshape(-1)]
            except Exception as exc:
                warn_once(failed, s.name, row["id"], exc)
    return outputs


def _submit_outputs(opts: EvalOptions, pool, row: dict, outputs: dict[str, list[np.ndarray]]) -> list[tuple[dict, Any]]:
    """Submit the scoring of every output of ``row`` (saving it too with ``--save-audio``):
    ``(row so far, its scores to come)`` per output."""
    task, x = row["task"], row["input_audio"]
    targets = _targets(row)
    texts = [row.get("text"), row.get("text2")]
    ref = row.get("ref_audio")
    audio_dir = Path(opts.output) / "audio"
    pending = []
    for name, outs in outputs.items():
        if task == "ss" and len(outs) == 2 and len(targets) == 2:
            outs = pit_order(targets, outs)
        for slot, deg in enumerate(outs):
            deg = np.nan_to_num(np.asarray(deg, np.float32).reshape(-1))
            utt = row["id"] if len(outs) == 1 else f"{row['id']}_s{slot + 1}"
            base = {"utt": utt, "task": task, "group": _group(row), "system": name,
                    "snr": row.get("snr"), "sir": row.get("sir"), "duration": x.size / EVAL_SR}
            target = targets[slot] if slot < len(targets) else None
            speech = _group(row) != "lass-noise"
            job = {"utt": utt, "ref": target, "deg": deg, "text": texts[slot] if speech else None,
                   "max_delay_ms": opts.max_delay_ms, "speaker": speech}
            if task == "vc":  # similarity to the voice asked for
                job.update(spk_ref=ref, spk_key=f"{row['id']}_ref")
            if opts.save_audio:
                from hasrd.io.audio import save_audio

                (audio_dir / name).mkdir(parents=True, exist_ok=True)
                save_audio(audio_dir / name / f"{utt}.wav", deg[None], EVAL_SR)
            pending.append((base, pool.submit(score_job, job)))
    return pending


def summarize_tasks(result: dict) -> list[dict]:
    """One row per (group, system): mean ± 95 % CI of each metric, corpus WER with a bootstrap interval."""
    rows = result["rows"]
    groups = [g for g in GROUP_ORDER if any(r["group"] == g for r in rows)]
    out = []
    for g in groups:
        for name in result["systems"]:
            mine = [r for r in rows if r["group"] == g and r["system"] == name and "error" not in r]
            if not mine:
                continue
            entry: dict[str, Any] = {"group": g, "system": name, "n": len(mine)}
            for key, _, _ in TASK_COLUMNS:
                if key == "wer":
                    have = [r for r in mine if r.get("ref_words")]
                    entry["wer"] = corpus_rate([r["word_edits"] for r in have], [r["ref_words"] for r in have]) if have else None
                else:
                    stat = mean_ci([r.get(key) for r in mine])
                    entry[key] = stat if stat["n"] else None
            out.append(entry)
    return out


def task_markdown(result: dict, summary: list[dict]) -> str:
    lines = ["# Token-LM tasks", ""]
    for spec in result["lm"]:
        lines.append(f"* `{spec['name']}`: {spec['path']} ({'greedy' if spec['greedy'] else 'sampled, seed 0'}; "
                     f"codec {spec['codec']}, n_q {spec['n_q']}; tasks {', '.join(spec['tasks'])})")
    lines += ["", "Mean ± 95 % CI over scored items; WER is the corpus rate with a 95 % bootstrap interval. "
              "`input`: the task's input scored as its output (the floor); `target-tokens`: the target coded "
              "by the LM's codec at its n_q (the ceiling). ss is scored permutation-invariantly, one item per source. "
              "vc: speaker similarity is to the ref clip; WER against the source's words.", ""]
    for g in GROUP_ORDER:
        mine = [e for e in summary if e["group"] == g]
        if not mine:
            continue
        cols = [c for c in TASK_COLUMNS if any(e.get(c[0]) is not None for e in mine)]
        lines += [f"## {g}", "", "| system | n | " + " | ".join(c[1] for c in cols) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in cols) + " |"]
        for e in mine:
            lines.append(f"| {e['system']} | {e['n']} | " + " | ".join(cell(e.get(k), k, f) for k, _, f in cols) + " |")
        lines.append("")
    for line in result["skipped"]:
        lines.append(f"* {line}")
    return "\n".join(lines).rstrip() + "\n"


def plot_tasks(summary: list[dict], path: Path) -> Path | None:
    """STOI and DNSMOS per task group, one bar per system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    groups = [g for g in GROUP_ORDER if any(e["group"] == g for e in summary)]
    systems = list(dict.fromkeys(e["system"] for e in summary))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, (key, title) in zip(axes, (("si_sdr", "SI-SDR (dB)"), ("stoi", "STOI"), ("dnsmos_ovrl", "DNSMOS OVRL"))):
        width = 0.8 / max(1, len(systems))
        for k, name in enumerate(systems):
            vals = []
            for g in groups:
                e = next((e for e in summary if e["group"] == g and e["system"] == name), None)
                st = None if e is None else e.get(key)
                vals.append(st["mean"] if st else math.nan)
            ax.bar(np.arange(len(groups)) + (k - (len(systems) - 1) / 2) * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(groups)), groups, rotation=20)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_task_report(result: dict, output: str | Path) -> dict[str, Path]:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize_tasks(result)
    files = {"markdown": out / "task_summary.md", "rows": out / "task_rows.csv", "summary": out / "task_summary.csv",
             "json": out / "tasks.json"}
    write(files["markdown"], task_markdown(result, summary))
    write_csv(files["rows"], result["rows"])
    flat = []
    for e in summary:
        row = {"group": e["group"], "system": e["system"], "n": e["n"]}
        for key, _, _ in TASK_COLUMNS:
            st = e.get(key)
            if st is None:
                continue
            if key == "wer":
                row.update(wer=st["rate"], wer_lo=st["lo"], wer_hi=st["hi"])
            else:
                row.update({key: st["mean"], f"{key}_ci95": st["ci95"]})
        flat.append(row)
    write_csv(files["summary"], flat)
    write(files["json"], json.dumps(clean({"lm": result["lm"], "summary": flat, "skipped": result["skipped"]}), indent=2) + "\n")
    png = plot_tasks(summary, out / "tasks.png")
    if png is not None:
        files["plot"] = png
    return files
