"""Is a spoken prompt usable? Empty, silent and non-speech prompts are refused in one line.

No torch here (numpy and scipy only), so the CLI can check a prompt before loading a model.

:func:`check_prompt` raises :class:`PromptError` (a ``ValueError``) when the audio is

* **empty**: no samples;
* **silent**: its peak is below :data:`SILENT_PEAK_DBFS` (-50 dBFS), or fewer than
  :data:`MIN_ACTIVE_SECONDS` (0.2 s) of 10 ms frames are *active* (an RMS no more than 30 dB
  below the loudest frame and above -60 dBFS);
* **not speech**: it fails any of the four tests below. Speech has them; the steady or
  impulsive sounds a user might play instead (a tone, a bell, noise, rain, a siren, knocks)
  lack at least one.

The non-speech rule, on the audio high-passed at 60 Hz and resampled to 8 kHz, with a YIN pitch
track (64 ms frames, 10 ms hop, 60-1600 Hz searched, a frame is periodic when the cumulative
mean normalised difference falls below 0.3; the first such dip gives its F0):

1. **voicing**: at least 10 % of the active frames (:data:`MIN_VOICED_FRACTION`), and at least
   0.15 s in all (:data:`MIN_VOICED_SECONDS`), are periodic with an F0 in 70-400 Hz, the range of
   human voices. A tone or whistle above 400 Hz is found at its own pitch, not a sub-harmonic,
   because the search goes up to 1600 Hz; noise, rain, wind and claps are not periodic.
2. **syllabic modulation**: at least 30 % (:data:`MIN_SYLLABIC_SHARE`) of the 0.5-25 Hz
   modulation power of the frame-energy envelope (in dB, floored 40 dB below its maximum) lies
   at 2-8 Hz, the syllable rate. A struck bell decays slowly; sirens and engines are steady.
3. **not a near-constant pitch**: the voiced frames' F0 spans at least 1.25 semitones between
   its 10th and 90th percentiles (:data:`MIN_PITCH_RANGE_SEMITONES`): intonation. Knocks and
   tones keep one pitch.

The thresholds were set on the data present in this repository (``benchmarks/prompt_check.py``
measures them; docs/star.md has the figures): speech from ``data/corpus/manifest_val.jsonl`` and
``hasrd/assets/eval``, non-speech from ``data/events/manifest_eval.jsonl``. That is in-sample: a
crowd of talkers, singing or a parrot can pass, and a whispered prompt (no voicing) is refused.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from math import gcd

import numpy as np

SILENT_PEAK_DBFS = -50.0
MIN_ACTIVE_SECONDS = 0.2
ACTIVE_RANGE_DB = 30.0  # an active frame is within this of the loudest one
ACTIVE_FLOOR_DBFS = -60.0
MIN_VOICED_FRACTION = 0.1
MIN_VOICED_SECONDS = 0.15
MIN_SYLLABIC_SHARE = 0.3
MIN_PITCH_RANGE_SEMITONES = 1.25
VOICE_HZ = (70.0, 400.0)

_RATE = 8000  # pitch analysis rate
_HOP = 80  # 10 ms
_WIN = 512  # 64 ms
_SEARCH_HZ = (60.0, 1600.0)
_YIN_THRESHOLD = 0.3
_FRAMES_PER_SECOND = 100


class PromptError(ValueError):
    """A prompt that cannot be used; the message is one line."""


@dataclass
class PromptFeatures:
    """What :func:`check_prompt` measured (seconds, fractions, dBFS, semitones)."""

    peak_dbfs: float
    active_seconds: float
    voiced_seconds: float
    voiced_fraction: float
    syllabic_share: float
    pitch_range: float

    def as_dict(self) -> dict:
        return asdict(self)


def _mono(audio) -> np.ndarray:
    if hasattr(audio, "detach"):  # a torch tensor
        audio = audio.detach().cpu().numpy()
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim > 1:
        x = x.reshape(-1, x.shape[-1]).mean(axis=0)
    return x.reshape(-1)


def _frame_db(x: np.ndarray, sr: int) -> np.ndarray:
    """RMS in dBFS of 20 ms frames every 10 ms."""
    hop = max(1, sr // _FRAMES_PER_SECOND)
    n = 1 + (x.size - 1) // hop
    padded = np.pad(x, (hop // 2, 2 * hop))
    frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n]
    return 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-12))


def yin_track(y: np.ndarray, sr: int = _RATE) -> np.ndarray:
    """F0 in Hz per 10 ms frame (NaN where aperiodic) of ``y`` at ``sr`` (YIN, de Cheveigné & Kawahara 2002)."""
    hop, win = sr * _HOP // _RATE, sr * _WIN // _RATE
    tau_min, tau_max = int(sr / _SEARCH_HZ[1]), int(np.ceil(sr / _SEARCH_HZ[0]))
    w = win - tau_max
    n = 1 + (y.size - 1) // hop
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, (win // 2, win)), win)[::hop][:n].T  # [win, n]
    diff = np.zeros((tau_max + 1, n))
    for tau in range(1, tau_max + 1):
        diff[tau] = ((frames[:w] - frames[tau:tau + w]) ** 2).sum(axis=0)
    cmnd = np.ones_like(diff)
    cmnd[1:] = diff[1:] * np.arange(1, tau_max + 1)[:, None] / np.maximum(np.cumsum(diff[1:], axis=0), 1e-20)
    f0 = np.full(n, np.nan)
    below = cmnd[tau_min:] < _YIN_THRESHOLD
    for i in np.flatnonzero(below.any(axis=0)):
        tau = tau_min + int(np.argmax(below[:, i]))
        while tau < tau_max and cmnd[tau + 1, i] < cmnd[tau, i]:  # down to the dip's bottom
            tau += 1
        a, b, c = cmnd[tau - 1, i], cmnd[tau, i], cmnd[min(tau + 1, tau_max), i]
        den = a - 2 * b + c
        f0[i] = sr / (tau + (0.5 * (a - c) / den if den > 0 and tau < tau_max else 0.0))
    return f0


def prompt_features(audio, sr: int) -> PromptFeatures:
    """The measurements of the module docstring for ``audio`` (``[T]``, ``[C, T]``; numpy or torch) at ``sr``."""
    from scipy import signal

    x = _mono(audio)
    if x.size == 0:
        return PromptFeatures(-np.inf, 0.0, 0.0, 0.0, 0.0, 0.0)
    peak = float(np.abs(x).max())
    peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
    db = _frame_db(x, sr)
    active = (db >= db.max() - ACTIVE_RANGE_DB) & (db >= ACTIVE_FLOOR_DBFS)
    high = signal.sosfilt(signal.butter(4, 60.0, "highpass", fs=sr, output="sos"), x)
    g = gcd(int(sr), _RATE)
    f0 = yin_track(signal.resample_poly(high, _RATE // g, int(sr) // g))
    n = min(f0.size, active.size)
    f0, act = f0[:n], active[:n]
    with np.errstate(invalid="ignore"):
        voiced = act & (f0 >= VOICE_HZ[0]) & (f0 <= VOICE_HZ[1])
    semis = 12 * np.log2(f0[voiced]) if voiced.sum() >= 3 else np.zeros(1)
    env = np.maximum(db, db.max() - 40.0)
    env = env - env.mean()
    size = max(env.size, 4 * _FRAMES_PER_SECOND)  # at least 0.25 Hz resolution
    power = np.abs(np.fft.rfft(env * np.hanning(env.size), n=size)) ** 2
    freq = np.fft.rfftfreq(size, 1.0 / _FRAMES_PER_SECOND)
    total = power[(freq >= 0.5) & (freq <= 25.0)].sum()
    share = float(power[(freq >= 2.0) & (freq <= 8.0)].sum() / total) if total > 0 else 0.0
    return PromptFeatures(
        peak_dbfs=float(peak_db), active_seconds=float(active.sum()) / _FRAMES_PER_SECOND,
        voiced_seconds=float(voiced.sum()) / _FRAMES_PER_SECOND,
        voiced_fraction=float(voiced.sum() / max(int(act.sum()), 1)), syllabic_share=share,
        pitch_range=float(np.percentile(semis, 90) - np.percentile(semis, 10)))


def check_prompt(audio, sr: int) -> PromptFeatures:
    """Raise :class:`PromptError` (one line) for an empty, silent or non-speech prompt; else its features."""
    x = _mono(audio)
    if x.size == 0:
        raise PromptError("empty prompt: no samples")
    if not np.isfinite(x).all():
        raise PromptError("the prompt holds NaN or infinite samples")
    f = prompt_features(x, sr)
    if f.peak_dbfs < SILENT_PEAK_DBFS:
        raise PromptError(f"silent prompt: peak {f.peak_dbfs:.0f} dBFS is below {SILENT_PEAK_DBFS:.0f} dBFS")
    if f.active_seconds < MIN_ACTIVE_SECONDS:
        raise PromptError(f"silent prompt: {f.active_seconds:.2f} s of sound, less than {MIN_ACTIVE_SECONDS:g} s")
    why = []
    if f.voiced_fraction < MIN_VOICED_FRACTION or f.voiced_seconds < MIN_VOICED_SECONDS:
        why.append(f"{f.voiced_seconds:.2f} s voiced at 70-400 Hz ({100 * f.voiced_fraction:.0f} % of the sound)")
    if f.syllabic_share < MIN_SYLLABIC_SHARE:
        why.append(f"little syllable-rate modulation ({100 * f.syllabic_share:.0f} % at 2-8 Hz)")
    if not why and f.pitch_range < MIN_PITCH_RANGE_SEMITONES:
        why.append(f"a near-constant pitch ({f.pitch_range:.2f} semitones)")
    if why:
        raise PromptError("the prompt does not sound like speech: " + "; ".join(why)
                          + " (say what sound you want, e.g. 'a bell ringing')")
    return f
