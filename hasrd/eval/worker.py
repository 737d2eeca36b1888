"""The judges' side of an evaluation: the worker processes that score (utterance, system) pairs.

Each worker loads its judges (PESQ, STOI, DNSMOS, ASR, speaker embedder) once, on first use or at
once through :func:`warm_up`; :func:`make_pool` starts them (or an in-process stand-in for
``--jobs 0/1``). The jobs, :func:`score_job` and :func:`align_job`, are plain functions of plain
data so that they travel to a spawned process.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

from .metrics import EVAL_SR, align, fidelity, pitch_track

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
