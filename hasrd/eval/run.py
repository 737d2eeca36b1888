"""The evaluation loop: code every utterance with every system, score it in worker processes.

Systems run in the main process (a hasrd model is loaded once there); the judges (PESQ, STOI,
DNSMOS, ASR, speaker embedder) run in ``jobs`` worker processes, each loading its models once
(:mod:`hasrd.eval.worker`). What runs comes from :mod:`hasrd.eval.resolve`; the options, the
result and the error of a run are in :mod:`hasrd.eval.options` (all importable from here too).
"""
from __future__ import annotations

import importlib.util
import math
import re
import sys
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from .metrics import EVAL_SR
from .options import GROUP_KEYS, METRIC_KEYS, EvalError, EvalOptions, EvalResult
from .output import say, warn_once
from .resolve import baseline_systems, build_systems, check_judges, enhancer_systems
from .worker import align_job, make_pool, score_job, warm_up

__all__ = ["GROUP_KEYS", "METRIC_KEYS", "EvalError", "EvalOptions", "EvalResult", "align_job", "baseline_systems",
           "build_systems", "check_judges", "enhancer_systems", "make_pool", "run_evaluation", "score_job",
           "warm_up", "warn_once"]


def run_evaluation(opts: EvalOptions) -> EvalResult:
    """Run every system over the set, score everything, and return rows and probe data
    (writing nothing but decoded audio; :func:`hasrd.eval.report.write_report` writes the rest)."""
    specs, judge_skips = check_judges(opts)
    pool = make_pool(specs, int(opts.jobs))  # first: the workers load their judges meanwhile
    try:
        utts, systems, models, skipped = _load_inputs(opts)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    skipped += judge_skips
    for line in skipped:
        say(line)
    notes = []
    if not any(u.text for u in utts) and specs["asr"]:
        notes.append("no transcripts: WER/CER not computed (pass --transcripts)")
        say("note: " + notes[-1])
    want_probes = _want_probes(opts, models, utts, skipped)

    from tqdm import tqdm

    probe_utts = _one_per_clean_file(utts) if want_probes else []
    total = len(utts) * len(systems) + len(probe_utts)
    bar = tqdm(total=total, desc="evaluating", unit="item", disable=not opts.progress, file=sys.stderr)
    try:
        align_futs = _submit_alignments(pool, probe_utts, bar) if want_probes else {}
        pending = _submit_scoring(opts, pool, utts, systems, bar)
        rows = _collect_rows(pending)
        probes = _probe_results(models, utts, align_futs, opts.n_q) if want_probes else {}
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)

    return EvalResult(
        rows=rows, systems=[_system_info(s) for s in systems], probes=probes, skipped=skipped,
        notes=notes,
        utterances=[_utterance_info(u) for u in utts],
    )


def _load_inputs(opts: EvalOptions) -> tuple[list, list, list, list[str]]:
    """``(utterances, systems, hasrd models, skip lines)`` of the run."""
    from .data import load_eval_set

    if opts.transcripts is not None and not Path(opts.transcripts).is_file():
        raise EvalError(f"--transcripts {opts.transcripts}: no such file")
    try:
        utts = load_eval_set(opts.data, opts.transcripts, opts.limit)
    except (OSError, ValueError) as exc:
        raise EvalError(f"--data: {exc}") from None
    systems, models, skipped = build_systems(opts, noisy=any(u.input is not None for u in utts))
    return utts, systems, models, skipped


def _want_probes(opts: EvalOptions, models: list, utts: list, skipped: list[str]) -> bool:
    """Whether the run probes its token models (a skip line, said and kept, where it cannot)."""
    want = opts.probes and any(not m.codec.continuous for m in models) and any(u.text for u in utts)
    if want and importlib.util.find_spec("pocketsphinx") is None:
        skipped.append("skip probes: phone alignment needs pocketsphinx")
        say(skipped[-1])
        want = False
    return want


def _submit_alignments(pool, probe_utts: list, bar) -> dict[str, Future]:
    """One phone-alignment job per probed utterance with a transcript, by utterance id."""
    align_futs: dict[str, Future] = {}
    for u in probe_utts:
        if u.text:
            f = pool.submit(align_job, {"audio": u.audio, "text": u.text})
            f.add_done_callback(lambda _f: bar.update(1))
            align_futs[u.id] = f
        else:
            bar.update(1)
    return align_futs


def _submit_scoring(opts: EvalOptions, pool, utts: list, systems: list, bar) -> list[tuple[dict, Future | None]]:
    """Code every utterance with every system here and submit its scoring: ``(row so far, its
    scores to come)`` per pair, None for a pair whose coding failed (its row says why)."""
    audio_dir = Path(opts.output) / "audio"
    pending: list[tuple[dict, Future | None]] = []
    failed_systems: set[str] = set()
    for u in utts:
        for s in systems:
            base = _row_base(u, s)
            heard = u.audio if u.input is None or s.clean_input else u.input  # scored against u.audio
            try:
                deg, payload = s.process(heard, EVAL_SR)
                deg = np.nan_to_num(np.asarray(deg, np.float32).reshape(-1))
            except Exception as exc:
                warn_once(failed_systems, s.name, u.id, exc)
                pending.append(({**base, "error": f"{type(exc).__name__}: {exc}"}, None))
                bar.update(1)
                continue
            base["payload_bytes"] = int(payload)
            base["bitrate_measured"] = 8.0 * payload / u.duration if u.duration > 0 else math.nan
            if opts.save_audio:
                _save_decoded(audio_dir, s.name, u.id, deg)
            job = {"utt": u.id, "ref": u.audio, "deg": deg, "text": u.text,
                   "max_delay_ms": opts.max_delay_ms}
            f = pool.submit(score_job, job)
            f.add_done_callback(lambda _f: bar.update(1))
            pending.append((base, f))
    return pending


def _row_base(u, s) -> dict:
    """The fields of an (utterance, system) row known before scoring."""
    base = {"utt": u.id, "system": s.name, "family": s.family, "kind": s.kind, "n_q": s.n_q,
            "duration": u.duration, "bitrate_nominal": float(s.bitrate_nominal),
            "ref_text": u.text}
    base.update({k: u.extra[k] for k in GROUP_KEYS if k in u.extra})
    return base


def _save_decoded(audio_dir: Path, system: str, utt: str, deg: np.ndarray) -> None:
    from hasrd.io.audio import save_audio

    d = audio_dir / _safe(system)
    d.mkdir(parents=True, exist_ok=True)
    save_audio(d / f"{_safe(utt)}.wav", deg[None], EVAL_SR)


def _collect_rows(pending: list[tuple[dict, Future | None]]) -> list[dict]:
    """The rows, in submission order, each with its scores (waits for them)."""
    rows = []
    for base, f in pending:
        row = dict(base)
        if f is not None:
            row.update(f.result())
        rows.append(row)
    return rows


def _probe_results(models, utts, align_futs: dict[str, Future], n_q_list: list[int]) -> dict:
    """The probes of every token model on the aligned utterances (a note for each that is not)."""
    segs = {}
    failures = {}
    for uid, f in align_futs.items():
        r = f.result()
        if "error" in r:
            failures[uid] = r["error"]
        else:
            segs[uid] = r["segments"]
    for uid, why in failures.items():
        say(f"note: probes: {uid} not aligned ({why})")
    return _probe_models(models, utts, segs, failures, n_q_list)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


def _system_info(s) -> dict:
    return {"name": s.name, "family": s.family, "kind": s.kind, "n_q": s.n_q,
            "bitrate_nominal": float(s.bitrate_nominal)}


def _one_per_clean_file(utts: list) -> list:
    """The first utterance of each clean file (the probes align and code the clean speech, which
    several noisy versions may share)."""
    first: dict = {}
    for u in utts:
        first.setdefault(u.path, u)
    return list(first.values())


def _utterance_info(u) -> dict:
    info = {"id": u.id, "path": str(u.path), "duration": u.duration, "text": u.text}
    if u.input_path is not None:
        info["input"] = str(u.input_path)
    info.update({k: u.extra[k] for k in GROUP_KEYS if k in u.extra})
    return info


def _probe_models(models, utts, segs: dict, failures: dict, n_q_list: list[int]) -> dict:
    from .probes import codebook_probe, frame_labels

    out = {}
    by_id = {u.id: u for u in utts}
    for m in models:
        if m.codec.continuous:  # no codebooks to probe
            continue
        items = []
        for uid, seg in segs.items():
            codes, _ = m.codes(by_id[uid].audio, EVAL_SR)
            codes = codes.cpu().numpy()
            items.append((codes, frame_labels(seg, codes.shape[1], m.codec.frame_rate)))
        usable = [n for n in n_q_list if 1 <= n <= m.codec.num_codebooks]
        out[f"hasrd:{m.label}"] = {
            "frame_rate": float(m.codec.frame_rate),
            "num_codebooks": m.codec.num_codebooks,
            "num_semantic_codebooks": m.codec.num_semantic_codebooks,
            "codebook_sizes": list(m.codec.codebook_sizes),
            "aligned_utterances": len(items),
            "alignment_failures": failures,
            "n_q_low": min(usable) if usable else None,
            "n_q_high": max(usable) if usable else None,
            "codebooks": codebook_probe(items),
        }
    return out
