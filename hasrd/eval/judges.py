"""The model-based judges: a speech recogniser, a MOS predictor and a speaker embedder.

Every judge is built on first use and then kept (one per process), so a metric worker loads
each model once. None of them reaches the network: the defaults ship their weights inside pip
wheels (pocketsphinx's US English model, speechmos's DNSMOS ONNX files, resemblyzer's
``pretrained.pt``), and the stronger alternatives are read from a local folder the user names.

Specs:
    ASR:      ``pocketsphinx`` | ``none`` | a local folder holding a transformers ASR model
              (Whisper, wav2vec2-CTC, ...).
    speaker:  ``resemblyzer`` | ``none`` | a local folder holding a transformers
              ``*ForXVector`` model (for example WavLM-Base-Plus-SV).
    MOS:      ``dnsmos`` | ``none``; plus an optional hook ``module:function`` (for UTMOS or any
              other predictor), called as ``function(audio_16k_float32, 16000) -> float``.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from .metrics import EVAL_SR


class JudgeUnavailable(RuntimeError):
    """A judge cannot be built here (missing package or weights); the message says why."""


def _int16_bytes(audio: np.ndarray) -> bytes:
    return (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


# ---- speech recognition ----------------------------------------------------------------------


class PocketSphinxASR:
    """CMU PocketSphinx 5 with the US English acoustic model, dictionary and 3-gram LM of its wheel."""

    name = "pocketsphinx"

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise JudgeUnavailable(f"pocketsphinx is not installed ({exc}); pip install pocketsphinx") from None
        self._decoder = Decoder(samprate=EVAL_SR, loglevel="FATAL")

    def transcribe(self, audio: np.ndarray) -> str:
        d = self._decoder
        # The feature front end carries state (cepstral mean, ...) from one utterance to the
        # next, which would make a transcript depend on what the worker decoded before it.
        d.reinit_feat()
        d.start_utt()
        d.process_raw(_int16_bytes(audio), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""


class TransformersASR:
    """A transformers ``automatic-speech-recognition`` pipeline loaded from a local folder."""

    def __init__(self, path: str):
        if not Path(path).is_dir():
            raise JudgeUnavailable(f"{path}: no such model folder (the ASR judge reads local weights only)")
        try:
            from transformers import pipeline
        except ImportError as exc:  # pragma: no cover - transformers is a core dependency
            raise JudgeUnavailable(f"transformers is not importable ({exc})") from None
        self.name = f"hf:{Path(path).name}"
        self._pipe = pipeline("automatic-speech-recognition", model=str(path), device=-1)

    def transcribe(self, audio: np.ndarray) -> str:
        out = self._pipe({"raw": np.asarray(audio, np.float32), "sampling_rate": EVAL_SR})
        return out["text"] if isinstance(out, dict) else str(out)


def make_asr(spec: str | None):
    if not spec or spec == "none":
        return None
    if spec == "pocketsphinx":
        return PocketSphinxASR()
    return TransformersASR(spec)


# ---- MOS prediction ----------------------------------------------------------------------------


DNSMOS_WINDOW = 9.01  # seconds: the input length of the DNSMOS networks


class DNSMOS:
    """Microsoft's DNSMOS P.835 (SIG, BAK, OVRL) and P.808 predictors, from the speechmos wheel.

    speechmos scores every 1 s hop of 9.01 s windows and averages them; a clip shorter than a
    window is first repeated end to end. Here such a clip is repeated to exactly one window
    (the same content, scored once instead of up to 9 times), and the ONNX sessions run on
    ``threads`` threads so that parallel workers do not oversubscribe the CPU.
    """

    name = "dnsmos"

    def __init__(self, threads: int = 1):
        try:
            from speechmos import dnsmos
        except ImportError as exc:
            raise JudgeUnavailable(f"speechmos/onnxruntime not installed ({exc}); pip install speechmos onnxruntime") from None
        self._run = lambda x: dnsmos.run(x, EVAL_SR)
        try:  # speechmos's own scorer class and model files, with a thread cap
            import onnxruntime as ort

            folder = Path(dnsmos.__file__).resolve().parent / "dnsmos_models"
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            model = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
            model.primary_model_path = str(folder / "sig_bak_ovr.onnx")
            model.onnx_sess = ort.InferenceSession(model.primary_model_path, opts, providers=["CPUExecutionProvider"])
            model.p808_onnx_sess = ort.InferenceSession(str(folder / "model_v8.onnx"), opts, providers=["CPUExecutionProvider"])
            self._run = lambda x: model(x, EVAL_SR, False)
        except Exception:  # pragma: no cover - a different speechmos layout: use its public run()
            pass

    def score(self, audio: np.ndarray) -> dict:
        x = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
        if not np.any(x):
            return {k: math.nan for k in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")}
        window = int(DNSMOS_WINDOW * EVAL_SR)
        if x.size < window:
            x = np.tile(x, -(-window // x.size))[:window]
        r = self._run(x)
        return {
            "dnsmos_ovrl": float(r["ovrl_mos"]), "dnsmos_sig": float(r["sig_mos"]),
            "dnsmos_bak": float(r["bak_mos"]), "dnsmos_p808": float(r["p808_mos"]),
        }


def make_mos(spec: str | None):
    if not spec or spec == "none":
        return None
    if spec == "dnsmos":
        return DNSMOS()
    raise JudgeUnavailable(f"unknown MOS judge {spec!r} (use dnsmos or none; other predictors via --mos-hook)")


def load_hook(spec: str | None) -> Callable | None:
    """``module:function`` (a file path ``/x/y.py:function`` works too) -> the callable."""
    if not spec:
        return None
    if ":" not in spec:
        raise JudgeUnavailable(f"--mos-hook wants module:function, got {spec!r}")
    mod_name, func_name = spec.rsplit(":", 1)
    try:
        if mod_name.endswith(".py") and os.path.isfile(mod_name):
            spec_obj = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
            module = importlib.util.module_from_spec(spec_obj)
            spec_obj.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
        return getattr(module, func_name)
    except Exception as exc:
        raise JudgeUnavailable(f"--mos-hook {spec}: cannot load ({type(exc).__name__}: {exc})") from None


# ---- speaker embeddings -----------------------------------------------------------------------


class ResemblyzerSpeaker:
    """Resemblyzer's GE2E d-vector encoder (its weights ship in the wheel), 256-d, L2-normalised."""

    name = "resemblyzer"

    def __init__(self):
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            raise JudgeUnavailable(f"resemblyzer is not installed ({exc}); pip install resemblyzer") from None
        self._pre = preprocess_wav
        self._enc = VoiceEncoder(device="cpu", verbose=False)

    def embed(self, audio: np.ndarray) -> np.ndarray | None:
        audio = np.asarray(audio, np.float32)
        if audio.size < EVAL_SR // 10 or not np.any(audio):
            return None
        wav = self._pre(audio, source_sr=EVAL_SR)
        if wav.size < EVAL_SR // 4:
            # its VAD found (almost) no speech, as in badly garbled audio: embed the whole clip,
            # volume-normalised the same way, so that such audio scores low instead of not at all
            from resemblyzer.audio import normalize_volume

            wav = normalize_volume(audio, -30, increase_only=True)
        return np.asarray(self._enc.embed_utterance(wav), np.float64)


class TransformersSpeaker:
    """A transformers ``AutoModelForAudioXVector`` (WavLM/wav2vec2 x-vector head) from a local folder."""

    def __init__(self, path: str):
        if not Path(path).is_dir():
            raise JudgeUnavailable(f"{path}: no such model folder (the speaker judge reads local weights only)")
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.name = f"hf:{Path(path).name}"
        self._torch = torch
        self._fe = AutoFeatureExtractor.from_pretrained(str(path))
        self._model = AutoModelForAudioXVector.from_pretrained(str(path)).eval()

    def embed(self, audio: np.ndarray) -> np.ndarray | None:
        inputs = self._fe(np.asarray(audio, np.float32), sampling_rate=EVAL_SR, return_tensors="pt")
        with self._torch.no_grad():
            emb = self._model(**inputs).embeddings[0]
        return emb.double().numpy()


def make_speaker(spec: str | None):
    if not spec or spec == "none":
        return None
    if spec == "resemblyzer":
        return ResemblyzerSpeaker()
    return TransformersSpeaker(spec)


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return math.nan
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return math.nan
    return float(np.dot(a, b) / (na * nb))
