"""Noise for the enhancement recipe, made offline: generated signals and babble from training speech.

Every generator is ``f(num_samples, sample_rate, rng, speech=None) -> float32 [num_samples]``
with unit RMS; ``rng`` is a ``numpy.random.Generator`` so a recipe is reproducible from its seed.
``speech`` (a list of training-speech arrays) is only used by ``babble``.

Kinds:
    white, pink, brown   coloured stationary noise (1/f^0, 1/f^1, 1/f^2 power)
    hum                  mains hum: 50 or 60 Hz and harmonics with slow amplitude drift, plus a little hiss
    machine              low-passed noise amplitude-modulated at a few Hz (engines, fans, traffic)
    bursts               non-stationary: pink noise gated into random bursts, plus clicks
    babble               3 to 6 other utterances summed (speech-shaped, non-stationary)
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import signal

NoiseFn = Callable[..., np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.mean()
    rms = float(np.sqrt(np.mean(x**2)))
    return (x / rms if rms > 0 else x).astype(np.float32)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f^exponent (shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def white(n: int, sr: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    return _unit(rng.standard_normal(n))


def pink(n: int, sr: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    return _unit(_coloured(n, rng, 1.0))


def brown(n: int, sr: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    return _unit(_coloured(n, rng, 2.0))


def hum(n: int, sr: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = float(rng.choice([50.0, 60.0])) * (1 + 0.002 * rng.standard_normal())
    x = np.zeros(n)
    for k in range(1, 9):
        if k * f0 >= sr / 2:
            break
        amp = rng.uniform(0.2, 1.0) / k
        x += amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    drift = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return _unit(_unit(x * drift) + 0.1 * white(n, sr, rng))


def machine(n: int, sr: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    cutoff = rng.uniform(200.0, 1500.0)
    b, a = signal.butter(4, cutoff / (sr / 2), btype="low")
    x = signal.lfilter(b, a, rng.standard_normal(n))
    t = np.arange(n) / sr
    am = 1 + rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * rng.uniform(2.0, 12.0) * t)
    return _unit(x * am)


def bursts(n: int, sr: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    x = _coloured(n, rng, 1.0)
    gate = np.zeros(n)
    pos = 0
    while pos < n:  # alternating silences and bursts of 50-400 ms
        pos += int(rng.uniform(0.05, 0.5) * sr)
        length = int(rng.uniform(0.05, 0.4) * sr)
        gate[pos: pos + length] = rng.uniform(0.5, 1.0)
        pos += length
    gate = np.convolve(gate, np.hanning(int(0.01 * sr) + 1) / (0.005 * sr), mode="same")  # 10 ms ramps
    clicks = np.zeros(n)
    idx = rng.integers(0, n, size=max(1, int(n / sr * rng.uniform(1, 5))))
    clicks[idx] = rng.choice([-1.0, 1.0], size=idx.size) * 20.0
    return _unit(_unit(x * gate) + _unit(clicks) * 0.5 if gate.any() else x)


def babble(n: int, sr: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    if not speech:
        raise ValueError("babble noise needs speech to mix (none given)")
    x = np.zeros(n)
    for _ in range(int(rng.integers(3, 7))):
        s = np.asarray(speech[int(rng.integers(len(speech)))], np.float64)
        s = _unit(s) if s.size else s
        if s.size == 0:
            continue
        reps = int(np.ceil((n + s.size) / s.size))
        s = np.tile(s, reps)
        start = int(rng.integers(0, s.size - n + 1))
        x += s[start: start + n]
    return _unit(x) if x.any() else white(n, sr, rng)


NOISES: dict[str, NoiseFn] = {
    "white": white, "pink": pink, "brown": brown, "hum": hum,
    "machine": machine, "bursts": bursts, "babble": babble,
}


def make_noise(kind: str, num_samples: int, sample_rate: int, rng: np.random.Generator, speech=None) -> np.ndarray:
    """``num_samples`` of noise of ``kind`` (one of :data:`NOISES`), unit RMS, float32."""
    try:
        fn = NOISES[kind]
    except KeyError:
        raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISES)}") from None
    return fn(int(num_samples), int(sample_rate), rng, speech=speech)


def active_rms(x: np.ndarray, sample_rate: int, frame_ms: float = 20.0, floor_db: float = -40.0) -> float:
    """RMS over the frames within ``floor_db`` of the loudest one (so pauses do not lower the SNR)."""
    x = np.asarray(x, np.float64)
    hop = max(1, int(sample_rate * frame_ms / 1000))
    frames = x[: x.size // hop * hop].reshape(-1, hop) if x.size >= hop else x.reshape(1, -1)
    power = np.mean(frames**2, axis=1)
    if not power.any():
        return 0.0
    keep = power >= power.max() * 10 ** (floor_db / 10)
    return float(np.sqrt(power[keep].mean()))


def noise_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, sample_rate: int) -> np.ndarray:
    """``noise`` scaled to ``snr_db`` below the active level of ``speech`` (see :func:`active_rms`)."""
    if noise.size != speech.size:
        raise ValueError(f"noise has {noise.size} samples, speech {speech.size}")
    level = active_rms(speech, sample_rate)
    if level == 0.0:
        raise ValueError("the speech is silent: no SNR can be set")
    noise_rms = float(np.sqrt(np.mean(np.asarray(noise, np.float64) ** 2))) or 1.0
    return (np.asarray(noise, np.float32) * (level / noise_rms) * 10 ** (-snr_db / 20)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)``: noise at ``snr_db`` (:func:`noise_at_snr`), both scaled together so the
    noisy peak is at most 0.95 (no clipping; the SNR is unchanged)."""
    speech = np.asarray(speech, np.float32)
    noisy = speech + noise_at_snr(speech, noise, snr_db, sample_rate)
    gain = peak_gain([noisy])
    return (speech * gain).astype(np.float32), (noisy * gain).astype(np.float32)


def peak_gain(signals, peak: float = 0.95) -> float:
    """The largest gain <= 1 that keeps every signal's peak at most ``peak``."""
    top = max(float(np.abs(s).max()) if np.size(s) else 0.0 for s in signals)
    return min(1.0, peak / top) if top > 0 else 1.0
