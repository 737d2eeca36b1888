"""Evaluating the token LM's tasks: ``evaluate.py --lm DIR --data TASKS.jsonl`` (docs/lm.md).

The set is a task manifest of :mod:`hasrd.lm.recipe` (rows with ``task``, ``input``, ``target``
and, by task, ``target2``, ``ref``, ``query``, ``text``/``text2``), made from evaluation speech
with ``--each`` (and ``--vc-unpaired`` for vc without parallel sentences). Every system processes
the row's ``input`` and is scored by the evaluator's own :func:`hasrd.eval.worker.score_job` (same
judges, same worker pool) against the row's target:

* ``input``: the mixture / noisy / source audio itself, the floor;
* ``target-tokens``: the target coded by the LM's codec at the LM's ``n_q``, at the input's level
  gain as in training (the ceiling of any LM that outputs those tokens; rows with a target only);
* on ``vc`` rows: ``input-tokens`` (the source through the codec: the WER an LM output could
  keep) and ``ref-voice`` (the row's ``ref2``, another clip of the ref's voice: the similarity
  ceiling);
* ``lm`` (one per ``--lm``, ``lm2``, ...): sampled once per ``--lm-seeds`` seed (rows have a
  ``seed``; ``--lm-greedy``: also a ``lm-greedy`` row);
* on ``se`` rows only: every ``--enhancer`` and the ``--baselines`` (spectral gating).

Scoring by task: SI-SDR, STOI, PESQ against the target; WER against the target's transcript
(none for a row whose utterance the recipe cropped); speaker similarity to the target (``tse``,
``se``, ``ss``) or to the ref clip (``vc``). ``ss`` is scored permutation-invariantly: of the two
ways to pair the two outputs with the two sources, the one with the larger summed STOI is kept,
and each source is one scored item. A ``vc`` row without a target gets WER (against the source's
words), DNSMOS and similarity to the ref only. A ``lass`` row whose query keeps a noise is scored
on the fidelity metrics only.

Results are grouped by ``task`` (``lass-speech`` and ``lass-noise`` apart) in
``OUTPUT/task_summary.md``, ``task_summary.csv``, ``task_rows.csv``, ``tasks.json`` and a figure
``tasks.png``. The summary pools items and seeds, adds the spread over seeds (``<metric>_seed_sd``,
the std of the per-seed means) and, on vc, ``spk_gain`` (an LM's speaker similarity minus the
input's, paired per utterance). It leaves SI-SDR out for the systems whose output a codec decodes
(:data:`CODEC_SYSTEMS`, every LM and enhancer): the codec keeps no phase; ``task_rows.csv`` keeps it.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import EVAL_SR, align, stoi_scores
from .options import EvalError, EvalOptions
from .output import cell, clean, say, warn_once, write, write_csv
from .resolve import baseline_systems, check_judges, enhancer_systems
from .stats import corpus_rate, mean_ci
from .worker import make_pool, score_job

#: (key, column title, format) of the per-task tables
TASK_COLUMNS = (("si_sdr", "SI-SDR dB", "{:.1f}"), ("stoi", "STOI", "{:.3f}"), ("pesq_wb", "PESQ-wb", "{:.2f}"),
                ("dnsmos_ovrl", "DNSMOS OVRL", "{:.2f}"), ("wer", "WER %", "{:.1f}"), ("spk_sim", "spk sim", "{:.3f}"))
GROUP_ORDER = ("se", "tse", "ss", "vc", "lass-speech", "lass-noise")
#: systems whose output a codec decodes (with every LM and enhancer): no SI-SDR in the summary
CODEC_SYSTEMS = ("target-tokens", "input-tokens", "ref-voice")
#: the metrics whose spread over --lm-seeds the summary reports
SEED_METRICS = ("stoi", "dnsmos_ovrl", "spk_sim", "wer")
SI_SDR_NOTE = ("SI-SDR is left out (-) for systems whose output a codec decodes ({}): the codec does not keep "
               "phase, so SI-SDR scores the phase, not the speech (the target's own tokens score about -27 dB); "
               "task_rows.csv keeps the raw values.")


class _LMSystem:
    def __init__(self, lm, name: str, greedy: bool, path: str):
        self.lm, self.name, self.greedy, self.path = lm, name, greedy, path
        self.kind = "lm"

    def outputs(self, task: str, x: np.ndarray, ref: np.ndarray | None, query: str | None,
                seed: int = 0) -> list[np.ndarray]:
        import torch

        from .systems import from_model, to_model

        sr = self.lm.sample_rate
        wav, n = to_model(x, EVAL_SR, sr)
        r = None if ref is None else to_model(ref, EVAL_SR, sr)[0]
        hop = self.lm.codec.hop_length
        frames = -(-n // hop)
        with torch.inference_mode():
            ys = self.lm.generate(task, wav, ref=r, query=query, n_frames=frames, greedy=self.greedy, seed=seed)
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


def _target_tokens(lm, audio: np.ndarray, level_from: np.ndarray) -> np.ndarray:
    """``audio`` coded by the LM's codec at its ``n_q`` (the LM's ceiling), at the level gain
    ``g`` of ``level_from`` (the row's input), as training coded its targets:
    ``decode(encode(audio * g)) / g``."""
    import torch

    from hasrd.enhance.features import level_gain

    from .systems import from_model, to_model

    codec = lm.codec
    wav, n = to_model(audio, EVAL_SR, codec.sample_rate)
    g = level_gain(to_model(level_from, EVAL_SR, codec.sample_rate)[0])
    with torch.inference_mode():
        y = codec.decode(codec.encode(wav * g, n_q=int(lm.settings["n_q"]))) / g
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
            for role in ("input", "target", "target2", "ref", "ref2"):
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


def _stoi(target: np.ndarray, output: np.ndarray) -> float:
    return stoi_scores(target, align(target, output)[0])["stoi"]


def pit_order(targets: list[np.ndarray], outputs: list[np.ndarray], score=None) -> list[np.ndarray]:
    """The two ``outputs`` in the order that pairs them best with the two ``targets``: the larger
    summed ``score(target, output)``, by default STOI after delay alignment (a codec's output has
    no phase to match, so SI-SDR cannot pair it): permutation-invariant scoring of separation."""
    score = score or _stoi
    straight = score(targets[0], outputs[0]) + score(targets[1], outputs[1])
    swapped = score(targets[0], outputs[1]) + score(targets[1], outputs[0])
    return [outputs[1], outputs[0]] if swapped > straight else list(outputs)


def _group(row: dict) -> str:
    if row["task"] == "lass":
        return "lass-speech" if row.get("keep", "speech") == "speech" else "lass-noise"
    return row["task"]


def run_task_evaluation(opts: EvalOptions, lm_specs: list[str], greedy: bool = False, seeds=(0,)) -> dict:
    """Every system on every row, scored (each sampled LM once per seed of ``seeds``); returns
    ``{"rows": [...], "systems": [...], "codec_systems": [...], "skipped": [...], "lm": [...]}``."""
    from .systems import EnhancerSystem

    seeds = [int(s) for s in dict.fromkeys(seeds)] or [0]
    specs, rows, lms, se_systems, skipped = _prepare(opts, lm_specs, greedy)
    for line in skipped:
        say(line)
    out_rows = _score_rows(opts, specs, rows, lms, se_systems, seeds)
    systems = ["input", "input-tokens", "target-tokens", "ref-voice", *(s.name for s in lms), *(s.name for s in se_systems)]
    codec = [*CODEC_SYSTEMS, *(s.name for s in lms), *(s.name for s in se_systems if isinstance(s, EnhancerSystem))]
    return {"rows": out_rows, "systems": systems, "codec_systems": codec, "skipped": skipped,
            "lm": [{"name": s.name, "path": s.path, "greedy": s.greedy, "seeds": None if s.greedy else seeds,
                    "tasks": s.lm.tasks, "codec": str(s.lm.settings["codec"]), "n_q": int(s.lm.settings["n_q"])}
                   for s in lms]}


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
    se_systems = enhancer_systems(opts.enhancers, {"input", "input-tokens", "target-tokens", "ref-voice",
                                                   *(s.name for s in lms)})
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


def _score_rows(opts: EvalOptions, specs: dict, rows: list[dict], lms: list[_LMSystem], se_systems: list,
                seeds: list[int]) -> list[dict]:
    """Every system's outputs of every row, scored by the judges' pool: one result row per output."""
    from tqdm import tqdm

    pool = make_pool(specs, int(opts.jobs))
    pending: list[tuple[dict, Any]] = []
    failed: set[str] = set()
    bar = tqdm(total=len(rows), desc="tasks", unit="row", disable=not opts.progress, file=sys.stderr)
    try:
        for row in rows:
            outputs = _row_outputs(row, lms, se_systems, failed, seeds)
            pending += _submit_outputs(opts, pool, row, outputs, multi_seed=len(seeds) > 1)
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


def _row_outputs(row: dict, lms: list[_LMSystem], se_systems: list, failed: set[str],
                 seeds: list[int] = (0,)) -> list[tuple[str, int | None, list[np.ndarray]]]:
    """``(system name, LM sampling seed or None, its outputs)`` for ``row``, a sampled LM once
    per seed (a system that fails on it has none; a warning the first time)."""
    task, x = row["task"], row["input_audio"]
    targets = _targets(row)
    ref = row.get("ref_audio")
    outputs: list[tuple[str, int | None, list[np.ndarray]]] = [("input", None, [x] * max(1, len(targets)))]
    if targets:
        outputs.append(("target-tokens", None, [_target_tokens(lms[0].lm, t, x) for t in targets]))
    if task == "vc":
        outputs.append(("input-tokens", None, [_target_tokens(lms[0].lm, x, x)]))
        if row.get("ref2_audio") is not None:
            outputs.append(("ref-voice", None, [row["ref2_audio"]]))
    for s in lms:
        for seed in [None] if s.greedy else seeds:
            try:
                outputs.append((s.name, seed, s.outputs(task, x, ref, row.get("query"), seed=seed or 0)))
            except Exception as exc:
                warn_once(failed, s.name, row["id"], exc)
    if task == "se":
        for s in se_systems:
            try:
                outputs.append((s.name, None, [np.asarray(s.process(x, EVAL_SR)[0], np.float32).reshape(-1)]))
            except Exception as exc:
                warn_once(failed, s.name, row["id"], exc)
    return outputs


def _submit_outputs(opts: EvalOptions, pool, row: dict, outputs: list[tuple[str, int | None, list[np.ndarray]]],
                    multi_seed: bool = False) -> list[tuple[dict, Any]]:
    """Submit the scoring of every output of ``row`` (saving it too with ``--save-audio``, as
    ``<utt>_seed<k>.wav`` when there are several seeds): ``(row so far, its scores to come)`` per output."""
    task, x = row["task"], row["input_audio"]
    targets = _targets(row)
    texts = [row.get("text"), row.get("text2")]
    ref = row.get("ref_audio")
    audio_dir = Path(opts.output) / "audio"
    pending = []
    for name, seed, outs in outputs:
        if task == "ss" and len(outs) == 2 and len(targets) == 2:
            outs = pit_order(targets, outs)
        for slot, deg in enumerate(outs):
            deg = np.nan_to_num(np.asarray(deg, np.float32).reshape(-1))
            utt = row["id"] if len(outs) == 1 else f"{row['id']}_s{slot + 1}"
            base = {"utt": utt, "task": task, "group": _group(row), "system": name, "seed": seed,
                    "snr": row.get("snr"), "sir": row.get("sir"), "duration": x.size / EVAL_SR}
            target = targets[slot] if slot < len(targets) else None
            speech = _group(row) != "lass-noise"
            job = {"utt": utt, "ref": target, "deg": deg, "text": texts[slot] if speech else None,
                   "max_delay_ms": opts.max_delay_ms, "speaker": speech}
            if task == "vc":  # similarity to the voice asked for
                job.update(spk_ref=ref, spk_key=f"{row['id']}_ref")
            if name == "ref-voice":  # another clip of the ref's voice: similarity only, no target, no words
                job.update(ref=None, text=None)
            if opts.save_audio:
                from hasrd.io.audio import save_audio

                (audio_dir / name).mkdir(parents=True, exist_ok=True)
                stem = f"{utt}_seed{seed}" if multi_seed and seed is not None else utt
                save_audio(audio_dir / name / f"{stem}.wav", deg[None], EVAL_SR)
            pending.append((base, pool.submit(score_job, job)))
    return pending


def _codec_systems(result: dict) -> set[str]:
    return set(result.get("codec_systems") or [*CODEC_SYSTEMS, *(e["name"] for e in result.get("lm", []))])


def _wer(rows: list[dict]) -> float:
    have = [r for r in rows if r.get("ref_words")]
    words = sum(r["ref_words"] for r in have)
    return sum(r["word_edits"] for r in have) / words if words else math.nan


def _seed_sd(mine: list[dict]) -> dict[str, float]:
    """``<metric>_seed_sd``: the std (ddof 1) over seeds of each seed's mean (corpus rate for WER),
    for rows of two seeds or more; {} otherwise."""
    seeds = sorted({r["seed"] for r in mine if r.get("seed") is not None})
    if len(seeds) < 2:
        return {}
    out = {}
    for key in SEED_METRICS:
        per = []
        for seed in seeds:
            rs = [r for r in mine if r.get("seed") == seed]
            per.append(_wer(rs) if key == "wer" else mean_ci([r.get(key) for r in rs])["mean"])
        per = [v for v in per if np.isfinite(v)]
        out[f"{key}_seed_sd"] = float(np.std(per, ddof=1)) if len(per) > 1 else None
    return out


def _spk_gain(rows: list[dict], name: str) -> dict | None:
    """Mean ± CI over vc utterances of ``name``'s speaker similarity (its mean over seeds) minus
    the input's: how much of the way to the ref's voice the system went."""
    def by_utt(system):
        got: dict[str, list[float]] = {}
        for r in rows:
            v = r.get("spk_sim")
            if r["group"] == "vc" and r["system"] == system and "error" not in r and v is not None and np.isfinite(v):
                got.setdefault(r["utt"], []).append(float(v))
        return {u: float(np.mean(v)) for u, v in got.items()}

    mine, floor = by_utt(name), by_utt("input")
    stat = mean_ci([mine[u] - floor[u] for u in mine if u in floor])
    return stat if stat["n"] else None


def summarize_tasks(result: dict) -> list[dict]:
    """One row per (group, system): mean ± 95 % CI of each metric over items and seeds pooled,
    corpus WER with a bootstrap interval; ``<metric>_seed_sd`` for a system sampled with several
    seeds; ``spk_gain`` for an LM on vc. SI-SDR is None for a codec-decoded system."""
    rows = result["rows"]
    codec = _codec_systems(result)
    lm_names = {e["name"] for e in result.get("lm", [])}
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
                elif key == "si_sdr" and name in codec:
                    entry[key] = None  # the codec keeps no phase (task_rows.csv has the value)
                else:
                    stat = mean_ci([r.get(key) for r in mine])
                    entry[key] = stat if stat["n"] else None
            entry.update(_seed_sd(mine))
            if g == "vc" and name in lm_names:
                entry["spk_gain"] = _spk_gain(rows, name)
            out.append(entry)
    return out


def _lm_line(spec: dict) -> str:
    seeds = spec.get("seeds") or [0]
    how = "greedy" if spec["greedy"] else f"sampled, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    return (f"* `{spec['name']}`: {spec['path']} ({how}; codec {spec['codec']}, n_q {spec['n_q']}; "
            f"tasks {', '.join(spec['tasks'])})")


def task_markdown(result: dict, summary: list[dict]) -> str:
    lines = ["# Token-LM tasks", ""]
    lines += [_lm_line(spec) for spec in result["lm"]]
    lines += ["", "Mean ± 95 % CI over scored items (and seeds, pooled); WER is the corpus rate with a 95 % bootstrap "
              "interval. `input`: the task's input scored as its output (the floor); `target-tokens`: the target "
              "coded by the LM's codec at its n_q, at the input's level (the ceiling). ss is scored "
              "permutation-invariantly (the pairing of larger summed STOI), one item per source. vc: speaker "
              "similarity is to the ref clip; WER against the source's words; `input-tokens` is the source through "
              "the codec, `ref-voice` another clip of the ref's voice (the similarity ceiling). Rows whose "
              "utterance the recipe cropped have no WER.", ""]
    dropped = {r["system"] for r in result["rows"] if r.get("si_sdr") is not None} & _codec_systems(result)
    codec = [s for s in result["systems"] if s in dropped]
    if codec:  # the systems whose SI-SDR the summary leaves out
        lines += [SI_SDR_NOTE.format(", ".join(f"`{s}`" for s in codec)), ""]
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
        for e in mine:
            sds = [(k, e.get(f"{k}_seed_sd")) for k in SEED_METRICS if e.get(f"{k}_seed_sd") is not None]
            if sds:
                titles = {k: t for k, t, _ in TASK_COLUMNS}
                lines.append(f"* `{e['system']}`, spread over seeds (std of the per-seed means): " + ", ".join(
                    f"{titles[k]} {100 * v:.1f}" if k == "wer" else f"{titles[k]} {v:.3f}" for k, v in sds))
        for e in mine:
            st = e.get("spk_gain")
            if st is not None:
                lines.append(f"* `{e['system']}` spk_gain (its speaker similarity to the ref minus the input's, paired "
                             f"per utterance): {cell(st, 'spk_gain', '{:+.3f}')} (n {st['n']})")
        if lines[-1]:
            lines.append("")
    for line in result["skipped"]:
        lines.append(f"* {line}")
    return "\n".join(lines).rstrip() + "\n"


def plot_tasks(summary: list[dict], path: Path) -> Path | None:
    """WER, STOI and DNSMOS per task group, one bar per system."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    groups = [g for g in GROUP_ORDER if any(e["group"] == g for e in summary)]
    systems = list(dict.fromkeys(e["system"] for e in summary))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, (key, title) in zip(axes, (("wer", "WER (%)"), ("stoi", "STOI"), ("dnsmos_ovrl", "DNSMOS OVRL"))):
        width = 0.8 / max(1, len(systems))
        for k, name in enumerate(systems):
            vals = []
            for g in groups:
                e = next((e for e in summary if e["group"] == g and e["system"] == name), None)
                st = None if e is None else e.get(key)
                vals.append(math.nan if not st else 100 * st["rate"] if key == "wer" else st["mean"])
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
        row.update({k: v for k, v in e.items() if k.endswith("_seed_sd")})
        if e.get("spk_gain") is not None:
            row.update(spk_gain=e["spk_gain"]["mean"], spk_gain_ci95=e["spk_gain"]["ci95"])
        flat.append(row)
    write_csv(files["summary"], flat)
    write(files["json"], json.dumps(clean({"lm": result["lm"], "summary": flat, "skipped": result["skipped"]}), indent=2) + "\n")
    png = plot_tasks(summary, out / "tasks.png")
    if png is not None:
        files["plot"] = png
    return files
