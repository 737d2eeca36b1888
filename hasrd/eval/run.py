"""The evaluation loop: code every utterance with every system, score it in worker processes.

Systems run in the main process (a hasrd model is loaded once there); the judges (PESQ, STOI,
DNSMOS, ASR, speaker embedder) run in ``jobs`` worker processes, each loading its models once.
"""
from __future__ import annotations

import importlib.util
import math
import multiprocessing
import re
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import EVAL_SR, align, fidelity, pitch_track

#: Manifest fields copied into every row of their utterance (the report groups by them).
GROUP_KEYS = ("snr", "noise")

METRIC_KEYS = ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "mel_distance", "f0_cents", "vuv_error",
               "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "mos_hook", "spk_sim")


@dataclass
class EvalOptions:
    """Everything one evaluation run needs (the command line maps onto it one to one)."""

    output: str
    models: list[str] = field(default_factory=list)
    data: str | None = None
    transcripts: str | None = None
    n_q: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    bound: bool = False  # also the decoder on the unquantised latent (systems.UnquantisedSystem)
    baselines: list[str] = field(default_factory=list)
    enhancers: list[str] = field(default_factory=list)
    asr: str = "pocketsphinx"
    speaker: str = "resemblyzer"
    mos: str = "dnsmos"
    mos_hook: str | None = None
    probes: bool = True
    jobs: int = 2
    max_delay_ms: float = 100.0
    limit: int | None = None
    save_audio: bool = False
    progress: bool = True


@dataclass
class EvalResult:
    rows: list[dict]
    systems: list[dict]
    probes: dict
    skipped: list[str]
    notes: list[str]
    utterances: list[dict]


class EvalError(RuntimeError):
    """The run cannot start (unreadable data, unloadable model, malformed spec)."""


# ---- worker side -------------------------------------------------------------------------------

_SPECS: dict = {}
_JUDGES: dict = {}
_REF_CACHE: dict = {}


def _init_worker(specs: dict) -> None:
    global _SPECS
    _SPECS = dict(specs)
    _JUDGES.clear()
    _REF_CACHE.clear()
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


class _Broken:
    """A judge that failed to build: every use raises the first error again (no retry per job)."""

    def __init__(self, message: str):
        self.message = message


def _judge(kind: str):
    if kind not in _JUDGES:
        from . import judges

        spec = _SPECS.get(kind)
        make = {"asr": judges.make_asr, "speaker": judges.make_speaker, "mos": judges.make_mos,
                "mos_hook": judges.load_hook}[kind]
        try:
            _JUDGES[kind] = make(spec)
        except Exception as exc:
            _JUDGES[kind] = _Broken(f"{kind} judge {spec!r} failed to load: {type(exc).__name__}: {exc}")
    judge = _JUDGES[kind]
    if isinstance(judge, _Broken):
        raise RuntimeError(judge.message)
    return judge


def warm_up(_: int = 0) -> bool:
    """Load every judge of this worker now (submitted once per worker while the main process
    loads data and models), and the metric libraries."""
    for kind in ("mos", "asr", "speaker", "mos_hook"):
        try:
            _judge(kind)
        except RuntimeError:
            pass
    import librosa  # noqa: F401  (the mel metric's first call is the slow one)
    import pesq  # noqa: F401
    import pystoi  # noqa: F401
    return True


def _ref_embedding(utt: str, ref: np.ndarray):
    key = ("spk", utt)
    if key not in _REF_CACHE:
        if len(_REF_CACHE) > 64:
            _REF_CACHE.clear()
        _REF_CACHE[key] = _judge("speaker").embed(ref)
    return _REF_CACHE[key]


def _ref_pitch(utt: str, ref: np.ndarray):
    key = ("pitch", utt)
    if key not in _REF_CACHE:
        if len(_REF_CACHE) > 64:
            _REF_CACHE.clear()
        _REF_CACHE[key] = pitch_track(ref, EVAL_SR)
    return _REF_CACHE[key]


def score_job(job: dict) -> dict:
    """Every metric of one (utterance, system) pair; runs in a worker process.

    ``job``: ``utt``, ``ref`` (the reference the fidelity metrics compare with; None: no fidelity
    metrics, as for a voice-converted output that has no reference), ``deg``, ``text`` and
    ``max_delay_ms``; optional ``spk_ref`` and ``spk_key`` (the audio speaker similarity is
    measured against, and its cache key; default ``ref`` and ``utt``) and ``speaker`` (False: no
    speaker similarity, for a target that is not speech)."""
    from . import judges
    from .text import error_counts

    ref, deg = job["ref"], job["deg"]
    out: dict[str, Any] = {}
    errors = []
    if ref is None:
        aligned = deg
    else:
        aligned, lag = align(ref, deg, EVAL_SR, job["max_delay_ms"])
        out["delay_ms"] = 1000.0 * lag / EVAL_SR
        try:
            out.update(fidelity(ref, aligned, EVAL_SR, _ref_pitch(job["utt"], ref)))
        except Exception as exc:  # pragma: no cover - a metric library failing on odd input
            errors.append(f"fidelity: {exc}")
    try:
        mos = _judge("mos")
        if mos is not None:
            out.update(mos.score(aligned))
        hook = _judge("mos_hook")
        if hook is not None:
            out["mos_hook"] = float(hook(aligned.astype(np.float32), EVAL_SR))
    except Exception as exc:
        errors.append(f"mos: {type(exc).__name__}: {exc}")
    text = job.get("text")
    try:
        asr = _judge("asr")
        if asr is not None:
            hyp = asr.transcribe(aligned)
            out["hyp"] = hyp
            if text is not None:
                c = error_counts(text, hyp)
                out.update(word_edits=c.word_edits, ref_words=c.ref_words, char_edits=c.char_edits,
                           ref_chars=c.ref_chars, wer=c.wer, cer=c.cer)
    except Exception as exc:
        errors.append(f"asr: {type(exc).__name__}: {exc}")
    try:
        spk = _judge("speaker") if job.get("speaker", True) else None
        spk_ref = job.get("spk_ref", ref)
        if spk is not None and spk_ref is not None:
            out["spk_sim"] = judges.cosine(_ref_embedding(job.get("spk_key", job["utt"]), spk_ref), spk.embed(aligned))
    except Exception as exc:
        errors.append(f"speaker: {type(exc).__name__}: {exc}")
    if errors:
        out["error"] = "; ".join(errors)
    return out


def align_job(job: dict) -> dict:
    """Phone segments of one utterance (for the probes); runs in a worker process."""
    from .probes import AlignmentError, phone_alignment

    try:
        return {"segments": phone_alignment(job["audio"], job["text"])}
    except AlignmentError as exc:
        return {"error": str(exc)}


class _InlineExecutor:
    """The executor interface without processes (``--jobs 0/1``): run at submit time."""

    def __init__(self, specs: dict):
        _init_worker_inline(specs)

    def submit(self, fn, *args):
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # pragma: no cover
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _init_worker_inline(specs: dict) -> None:
    global _SPECS
    if _SPECS != specs:
        _SPECS = dict(specs)
        _JUDGES.clear()
    _REF_CACHE.clear()


# ---- main side ----------------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_judges(opts: EvalOptions) -> tuple[dict, list[str]]:
    """Judge specs that can run here, and one skip line for each that cannot (checked cheaply,
    without loading any model)."""
    from .judges import JudgeUnavailable, load_hook

    specs = {"asr": opts.asr, "speaker": opts.speaker, "mos": opts.mos, "mos_hook": opts.mos_hook}
    skipped = []
    needs = {"pocketsphinx": "pocketsphinx", "resemblyzer": "resemblyzer", "dnsmos": "speechmos"}
    for kind in ("asr", "speaker", "mos"):
        spec = specs[kind]
        if not spec or spec == "none":
            specs[kind] = None
            continue
        if spec in needs:
            pkgs = [needs[spec]] + (["onnxruntime"] if spec == "dnsmos" else [])
            missing = [p for p in pkgs if importlib.util.find_spec(p) is None]
            if missing:
                skipped.append(f"skip judge {kind}={spec}: package {', '.join(missing)} not installed "
                               f"(pip install {' '.join(missing)})")
                specs[kind] = None
        elif kind == "mos":
            raise EvalError(f"unknown --mos {spec!r}: use dnsmos or none (other predictors via --mos-hook)")
        elif not Path(spec).is_dir():
            skipped.append(f"skip judge {kind}={spec}: no such local model folder (judges never download)")
            specs[kind] = None
    if specs["mos_hook"]:
        try:
            load_hook(specs["mos_hook"])
        except JudgeUnavailable as exc:
            skipped.append(f"skip judge mos_hook: {exc}")
            specs["mos_hook"] = None
    return specs, skipped


def build_systems(opts: EvalOptions, noisy: bool = False) -> tuple[list, list, list[str]]:
    """``(systems, hasrd_models, skip lines)``; the reference comes first, preceded by the noisy
    ``input`` when the set has noisy inputs (``noisy``); then models, enhancers, baselines."""
    from .systems import InputSystem, ReferenceSystem, load_hasrd_model, model_systems

    systems: list = ([InputSystem(EVAL_SR)] if noisy else []) + [ReferenceSystem(EVAL_SR)]
    models, skipped = [], []
    for spec in opts.models:
        try:
            model = load_hasrd_model(spec)
        except (FileNotFoundError, ValueError) as exc:
            raise EvalError(f"--model {spec}: {exc}") from None
        labels = {m.label for m in models}
        if model.label in labels:
            model.label = f"{model.label}{len(models) + 1}"
        models.append(model)
        rows, skips = model_systems(model, opts.n_q, opts.bound)  # per n_q; one row for a continuous codec
        systems += rows
        skipped += skips
    systems += _enhancer_systems(opts.enhancers, {s.name for s in systems})
    baselines, skips = baseline_systems(opts.baselines)
    systems += baselines
    skipped += skips
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EvalError(f"systems named twice: {', '.join(dup)}")
    return systems, models, skipped


def baseline_systems(specs: list[str]) -> tuple[list, list[str]]:
    """One system per ``--baselines`` spec, and a skip line for each that cannot run here (a
    missing tool or package); a malformed spec is an :class:`EvalError`."""
    from .systems import SystemUnavailable, parse_baseline

    systems, skipped = [], []
    for spec in specs:
        if not spec.strip():
            continue
        try:
            systems.append(parse_baseline(spec))
        except SystemUnavailable as exc:
            skipped.append(f"skip {exc}")
        except ValueError as exc:
            raise EvalError(f"--baselines {spec}: {exc}") from None
    return systems, skipped


def make_pool(specs: dict, jobs: int):
    """The judges' executor: ``jobs`` spawned worker processes (> 1), each told at once to load its
    judges while the caller loads data and models, or an in-process stand-in (0 or 1)."""
    if jobs > 1:
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(specs,))
        for i in range(jobs):
            pool.submit(warm_up, i)
        return pool
    return _InlineExecutor(specs)


def warn_once(failed: set[str], system: str, utt: str, exc: BaseException) -> None:
    """One stderr line for the first failure of ``system`` in a run (later ones only count)."""
    if system not in failed:
        _say(f"warning: {system} failed on {utt}: {type(exc).__name__}: {exc}")
        failed.add(system)


def _enhancer_systems(specs: list[str], taken: set[str]) -> list:
    """One :class:`~hasrd.eval.systems.EnhancerSystem` per ``--enhancer`` folder; a name already
    taken gets a number (as a second model of the same folder name does)."""
    from .systems import load_enhancer_system

    out = []
    for spec in specs:
        try:
            system = load_enhancer_system(spec)
        except ImportError as exc:
            raise EvalError(f"--enhancer {spec}: hasrd.enhance cannot be imported ({exc})") from None
        except (OSError, ValueError) as exc:
            raise EvalError(f"--enhancer {spec}: {exc}") from None
        if system.name in taken:
            system.name = f"{system.name}{len(out) + 2}"
        taken.add(system.name)
        out.append(system)
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


def _system_info(s) -> dict:
    return {"name": s.name, "family": s.family, "kind": s.kind, "n_q": s.n_q,
            "bitrate_nominal": float(s.bitrate_nominal)}


def run_evaluation(opts: EvalOptions) -> EvalResult:
    """Run every system over the set, score everything, and return rows and probe data
    (writing nothing but decoded audio; :func:`hasrd.eval.report.write_report` writes the rest)."""
    from .data import load_eval_set

    specs, judge_skips = check_judges(opts)
    pool = make_pool(specs, int(opts.jobs))  # first: the workers load their judges meanwhile
    try:
        try:
            utts = load_eval_set(opts.data, opts.transcripts, opts.limit)
        except (OSError, ValueError) as exc:
            raise EvalError(f"--data: {exc}") from None
        systems, models, skipped = build_systems(opts, noisy=any(u.input is not None for u in utts))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    skipped += judge_skips
    for line in skipped:
        _say(line)
    notes = []
    if not any(u.text for u in utts) and specs["asr"]:
        notes.append("no transcripts: WER/CER not computed (pass --transcripts)")
        _say("note: " + notes[-1])

    want_probes = opts.probes and any(not m.codec.continuous for m in models) and any(u.text for u in utts)
    if want_probes and importlib.util.find_spec("pocketsphinx") is None:
        skipped.append("skip probes: phone alignment needs pocketsphinx")
        _say(skipped[-1])
        want_probes = False

    audio_dir = Path(opts.output) / "audio"
    from tqdm import tqdm

    probe_utts = _one_per_clean_file(utts) if want_probes else []
    total = len(utts) * len(systems) + len(probe_utts)
    bar = tqdm(total=total, desc="evaluating", unit="item", disable=not opts.progress, file=sys.stderr)
    pending: list[tuple[dict, Future]] = []
    align_futs: dict[str, Future] = {}
    failed_systems: set[str] = set()

    def _tick(_f):
        bar.update(1)

    try:
        if want_probes:
            for u in probe_utts:
                if u.text:
                    f = pool.submit(align_job, {"audio": u.audio, "text": u.text})
                    f.add_done_callback(_tick)
                    align_futs[u.id] = f
                else:
                    bar.update(1)
        for u in utts:
            for s in systems:
                base = {"utt": u.id, "system": s.name, "family": s.family, "kind": s.kind, "n_q": s.n_q,
                        "duration": u.duration, "bitrate_nominal": float(s.bitrate_nominal),
                        "ref_text": u.text}
                base.update({k: u.extra[k] for k in GROUP_KEYS if k in u.extra})
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
                    from hasrd.io.audio import save_audio

                    d = audio_dir / _safe(s.name)
                    d.mkdir(parents=True, exist_ok=True)
                    save_audio(d / f"{_safe(u.id)}.wav", deg[None], EVAL_SR)
                job = {"utt": u.id, "ref": u.audio, "deg": deg, "text": u.text,
                       "max_delay_ms": opts.max_delay_ms}
                f = pool.submit(score_job, job)
                f.add_done_callback(_tick)
                pending.append((base, f))

        rows = []
        for base, f in pending:
            row = dict(base)
            if f is not None:
                row.update(f.result())
            rows.append(row)

        probes = {}
        if want_probes:
            segs = {}
            failures = {}
            for uid, f in align_futs.items():
                r = f.result()
                if "error" in r:
                    failures[uid] = r["error"]
                else:
                    segs[uid] = r["segments"]
            for uid, why in failures.items():
                _say(f"note: probes: {uid} not aligned ({why})")
            probes = _probe_models(models, utts, segs, failures, opts.n_q)
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)

    return EvalResult(
        rows=rows, systems=[_system_info(s) for s in systems], probes=probes, skipped=skipped,
        notes=notes,
        utterances=[_utterance_info(u) for u in utts],
    )


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
