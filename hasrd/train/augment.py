"""Recording-channel augmentation of training crops: microphone colour, band limits, rooms, noise.

The default model is trained on synthesised speech and judged on real recordings, which come
through microphones, rooms and lossy channels the synthesisers never had. :class:`ChannelAugment`
puts a random channel of that kind on a crop before the codec sees it; the codec is then asked
to reproduce the augmented crop (its input), so it learns to code such signals, not to remove them.

Every draw comes from the generator the dataset passes in (seeded by seed, epoch and item), so a
resumed run sees the same augmented crops as an uninterrupted one. Filters are ``scipy.signal``'s.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import signal

__all__ = ["ChannelAugment", "peaking_biquad", "synthetic_rir"]


def peaking_biquad(freq: float, gain_db: float, q: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` of the RBJ audio-EQ-cookbook peaking filter: ``gain_db`` at ``freq``, 0 dB far away."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


def synthetic_rir(rt60: float, drr_db: float, sample_rate: int, g: np.random.Generator) -> np.ndarray:
    """A room impulse response: a unit direct path, then exponentially decaying Gaussian noise
    that falls by 60 dB in ``rt60`` seconds, scaled so that the direct path is ``drr_db`` above
    the reverberant tail's energy (direct-to-reverberant ratio)."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(1, n) / sample_rate
    tail = g.standard_normal(n - 1) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 60 dB in amplitude
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail**2) + 1e-12)
    return np.concatenate([[1.0], tail])


def _range(name: str, value, lo: float, hi: float) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
        raise ValueError(f"train.augment.{name} must be a [low, high] pair of numbers, not {value!r}")
    a, b = float(value[0]), float(value[1])
    if not lo <= a <= b <= hi:
        raise ValueError(f"train.augment.{name} must satisfy {lo} <= low <= high <= {hi}, got {[a, b]}")
    return a, b


@dataclass
class ChannelAugment:
    """Random recording channel for one crop; each stage is applied with its own probability.

    Stages, in the order a signal meets them: a room (``p_reverb``: :func:`synthetic_rir` with
    ``rt60`` seconds and ``drr_db`` drawn uniformly), a microphone/room colour (``p_eq``:
    ``eq_bands`` peaking filters at log-uniform frequencies 100-6000 Hz, gains uniform in
    ``±eq_db``, Q 0.7-2), a band limit (``p_lowpass``: an 8th-order Butterworth low-pass at a
    cut-off uniform in ``lowpass_hz``, as telephone lines and lossy encoders leave) and background
    noise (``p_noise``: white noise at an SNR uniform in ``snr_db``). All probabilities default
    to 0, i.e. no augmentation.
    """

    p_reverb: float = 0.0
    rt60: tuple = (0.1, 0.5)
    drr_db: tuple = (0.0, 12.0)
    p_eq: float = 0.0
    eq_bands: int = 2
    eq_db: float = 6.0
    p_lowpass: float = 0.0
    lowpass_hz: tuple = (3500.0, 7500.0)
    p_noise: float = 0.0
    snr_db: tuple = (25.0, 45.0)

    @classmethod
    def from_config(cls, cfg: dict | None) -> "ChannelAugment | None":
        """From the ``train.augment`` mapping; ``None`` (or an empty mapping) means no augmentation."""
        if not cfg:
            return None
        if not isinstance(cfg, dict):
            raise ValueError(f"train.augment must be a mapping of stage settings, not {cfg!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"train.augment: unknown key(s) {unknown}; use {sorted(known)}")
        aug = cls(**cfg)
        aug.validate()
        return aug

    def validate(self) -> None:
        for name in ("p_reverb", "p_eq", "p_lowpass", "p_noise"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"train.augment.{name} must be a probability in [0, 1], got {p!r}")
        self.rt60 = _range("rt60", self.rt60, 0.01, 3.0)
        self.drr_db = _range("drr_db", self.drr_db, -20.0, 60.0)
        self.lowpass_hz = _range("lowpass_hz", self.lowpass_hz, 500.0, 24000.0)
        self.snr_db = _range("snr_db", self.snr_db, -10.0, 100.0)
        if not isinstance(self.eq_bands, int) or self.eq_bands < 1:
            raise ValueError(f"train.augment.eq_bands must be a positive integer, got {self.eq_bands!r}")
        if not isinstance(self.eq_db, (int, float)) or not 0 <= self.eq_db <= 24:
            raise ValueError(f"train.augment.eq_db must be a number of dB in [0, 24], got {self.eq_db!r}")

    def __call__(self, x: np.ndarray, sample_rate: int, g: np.random.Generator) -> np.ndarray:
        """``x`` (1-D float) through one random channel drawn from ``g``; same length and dtype.

        Every stage draws its random numbers whether or not it is applied, so switching one stage
        on or off does not change what the others draw for the same item.
        """
        n, dtype = x.shape[0], x.dtype
        y = x.astype(np.float64)
        nyq = sample_rate / 2

        on, rt60, drr = g.random() < self.p_reverb, g.uniform(*self.rt60), g.uniform(*self.drr_db)
        rir_seed = int(g.integers(2**31))
        if on:
            rir = synthetic_rir(rt60, drr, sample_rate, np.random.default_rng(rir_seed))
            y = signal.fftconvolve(y, rir)[:n]

        on = g.random() < self.p_eq
        bands = [(np.exp(g.uniform(np.log(100.0), np.log(min(6000.0, 0.9 * nyq)))),
                  g.uniform(-self.eq_db, self.eq_db), g.uniform(0.7, 2.0)) for _ in range(self.eq_bands)]
        if on:
            for freq, gain, q in bands:
                b, a = peaking_biquad(freq, gain, q, sample_rate)
                y = signal.lfilter(b, a, y)

        on, cutoff = g.random() < self.p_lowpass, g.uniform(*self.lowpass_hz)
        if on and cutoff < 0.98 * nyq:
            y = signal.sosfilt(signal.butter(8, cutoff, fs=sample_rate, output="sos"), y)

        on, snr, noise_seed = g.random() < self.p_noise, g.uniform(*self.snr_db), int(g.integers(2**31))
        if on:
            power = float(np.mean(y**2))
            if power > 0:
                noise = np.random.default_rng(noise_seed).standard_normal(n)
                y = y + noise * np.sqrt(power / 10 ** (snr / 10))
        return y.astype(dtype)
