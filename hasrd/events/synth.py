"""Sound events made procedurally, offline: one generator per class, each varied by its rng.

Every generator is ``f(seconds, sample_rate, rng) -> float32 [round(seconds * sample_rate)]``
peak-normalised to :data:`PEAK` (no clipping); ``rng`` is a ``numpy.random.Generator``, so a
clip is reproducible from its seed. No frequency is placed above 0.45 of the sample rate.

Classes (the names are the labels):
    bell      inharmonic partials (hum, prime, tierce, quint, nominal, ...) with exponential
              decays, higher partials dying faster; 1 to 3 strikes, a struck transient each
    beep      1 to 6 tone bursts (sine or square-like), constant, alternating or random pitch
    siren     a swept tone with harmonics: slow wail, fast yelp or two-tone hi-lo
    engine    low harmonic rumble at a firing rate of 12-50 Hz that drifts or accelerates,
              cycle-to-cycle jitter and noise pulsed by the firing
    rain      drizzle to downpour: many short chirped drops over band-passed noise
    wind      white noise through a band-pass whose centre and gain move slowly (gusts)
    knock     2 to 5 damped low thumps (two modes and a click) at a knocking rhythm
    clap      one person clapping a few times, or an audience of 8-60 clappers (applause)
    whistle   a near-sinusoid of 1-3 kHz with vibrato: a tune of glided notes, a slide,
              or a referee's trilled blasts; a little breath noise
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import signal

EventFn = Callable[[float, int, np.random.Generator], np.ndarray]

#: the peak every generated clip is normalised to
PEAK = 0.5


def _length(seconds: float, sr: int) -> int:
    n = int(round(float(seconds) * int(sr)))
    if n < 1:
        raise ValueError(f"{seconds} s at {sr} Hz is no sample")
    return n


def _finish(x: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """``x`` scaled to the given peak, float32 (all zeros stays zeros)."""
    x = np.asarray(x, np.float64)
    top = float(np.abs(x).max()) if x.size else 0.0
    return (x * (peak / top) if top > 0 else x).astype(np.float32)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _top(sr: int) -> float:
    """The highest frequency a generator may place."""
    return 0.45 * sr


def _band(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    """``x`` band-passed to ``[lo, hi]`` Hz (``hi`` kept under :func:`_top`)."""
    hi = min(hi, _top(sr))
    lo = min(lo, 0.8 * hi)
    sos = signal.butter(order, [lo, hi], btype="band", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 4) -> np.ndarray:
    sos = signal.butter(order, min(cutoff, _top(sr)), btype="low", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _fades(n: int, sr: int, fade_in: float, fade_out: float) -> np.ndarray:
    """A gain of 1 with raised-cosine ramps of ``fade_in`` and ``fade_out`` seconds at the ends."""
    g = np.ones(n)
    for seconds, end in ((fade_in, False), (fade_out, True)):
        m = min(n, max(1, int(seconds * sr)))
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        if end:
            g[n - m:] *= ramp[::-1]
        else:
            g[:m] *= ramp
    return g


def _smooth(t: np.ndarray, rng: np.random.Generator, lo: float, hi: float, parts: int = 3) -> np.ndarray:
    """A slow random curve in about [-1, 1]: a few sinusoids of ``lo``-``hi`` Hz."""
    out = np.zeros_like(t)
    for _ in range(parts):
        out += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(lo, hi) * t + rng.uniform(0, 2 * np.pi))
    return out / parts


def _add(x: np.ndarray, start: int, y: np.ndarray) -> None:
    """``x[start:] += y``, cut at the end of ``x``."""
    m = min(y.size, x.size - start)
    if m > 0:
        x[start:start + m] += y[:m]


def _scatter(n: int, positions: np.ndarray, amplitudes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Copies of ``kernel`` at ``positions`` (samples) scaled by ``amplitudes``, summed over ``n`` samples."""
    impulses = np.zeros(n)
    np.add.at(impulses, positions, amplitudes)
    return signal.fftconvolve(impulses, kernel)[:n]


def bell(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    t = np.arange(n) / sr
    nominal = _loguniform(rng, 250.0, 1100.0)
    ratios = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.5, 2.66, 3.0, 4.0, 5.33]) * rng.uniform(0.985, 1.015, 10)
    amps = rng.uniform(0.3, 1.0, ratios.size) / np.sqrt(np.arange(1, ratios.size + 1))
    phases = rng.uniform(0, 2 * np.pi, ratios.size)
    hum_tau = rng.uniform(0.4, 2.5) * max(0.3, min(1.0, seconds / 2))  # seconds of the lowest partial
    strikes = int(rng.integers(1, 4))
    gaps = rng.uniform(0.18, 0.3, strikes - 1) * seconds
    starts = (rng.uniform(0.0, 0.05) * seconds + np.concatenate([[0.0], np.cumsum(gaps)])) * sr
    x = np.zeros(n)
    for start in starts.astype(int):
        tt = t[: n - start]
        y = np.zeros(tt.size)
        for r, a, ph in zip(ratios, amps, phases):
            f = nominal * r
            if f < _top(sr):
                y += a * np.exp(-tt / (hum_tau * (0.5 / r) ** 0.7)) * np.sin(2 * np.pi * f * tt + ph)
        m = min(tt.size, int(0.015 * sr))  # the clapper's strike
        y[:m] += 0.3 * _band(rng.standard_normal(m), 1000.0, 6000.0, sr) * np.exp(-tt[:m] / 0.003)
        _add(x, start, rng.uniform(0.6, 1.0) * y)
    return _finish(x)


def beep(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    count = int(rng.integers(1, 7))
    dur, gap = rng.uniform(0.06, 0.4), rng.uniform(0.05, 0.3)
    total = count * dur + (count - 1) * gap
    if total > 0.95 * seconds:  # squeeze the pattern into the clip
        dur, gap, total = (v * 0.95 * seconds / total for v in (dur, gap, total))
    base = min(_loguniform(rng, 400.0, 2500.0), 0.4 * sr)
    pattern = int(rng.integers(3))  # 0 one pitch, 1 alternating two, 2 a random pitch each
    other = min(base * rng.choice([0.75, 0.8, 1.25, 1.5]), 0.4 * sr)
    square = rng.random() < 0.4
    start = rng.uniform(0, max(0.0, seconds - total))
    x = np.zeros(n)
    for k in range(count):
        f = [base, other if k % 2 else base, min(_loguniform(rng, 400.0, 2500.0), 0.4 * sr)][pattern]
        m = max(1, int(dur * sr))
        tt = np.arange(m) / sr
        harmonics = range(1, 9, 2) if square else (1,)
        y = sum(np.sin(2 * np.pi * h * f * tt) / h for h in harmonics if h * f < _top(sr))
        _add(x, int((start + k * (dur + gap)) * sr), y * _fades(m, sr, 0.005, 0.005))
    return _finish(x)


def siren(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    t = np.arange(n) / sr
    lo = rng.uniform(500.0, 900.0)
    hi = min(lo * rng.uniform(1.5, 2.3), 0.4 * sr)
    kind = int(rng.integers(3))  # 0 wail, 1 yelp, 2 two-tone
    if kind == 0:
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi))
    elif kind == 1:
        cycle = (rng.uniform(3.0, 7.0) * t + rng.random()) % 1.0
        sweep = np.sqrt(cycle)  # fast rise, jump back
    else:
        sweep = (np.sin(2 * np.pi * rng.uniform(0.6, 1.2) * t + rng.uniform(0, 2 * np.pi)) > 0).astype(float)
        sweep = np.convolve(sweep, np.ones(int(0.01 * sr) + 1) / (int(0.01 * sr) + 1), mode="same")
    f = lo + (hi - lo) * sweep
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = np.zeros(n)
    for k, a in ((1, 1.0), (2, rng.uniform(0.0, 0.3)), (3, rng.uniform(0.0, 0.4))):
        x += np.where(k * f < _top(sr), a * np.sin(k * phase), 0.0)
    if rng.random() < 0.5:  # passing by: louder in the middle
        centre, width = rng.uniform(0.3, 0.7) * seconds, rng.uniform(0.3, 1.0) * seconds
        x *= 0.3 + 1.0 / (1.0 + ((t - centre) / width) ** 2)
    return _finish(x * _fades(n, sr, 0.02, 0.02))


def engine(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    t = np.arange(n) / sr
    rate = rng.uniform(12.0, 50.0) * (1 + rng.uniform(-0.3, 0.6) * t / seconds) * (1 + 0.03 * _smooth(t, rng, 0.3, 2.0))
    phase = 2 * np.pi * np.cumsum(rate) / sr
    cycles = (phase / (2 * np.pi)).astype(int)
    jitter = 1 + 0.15 * rng.standard_normal(cycles[-1] + 1)  # each firing a little different
    x = np.zeros(n)
    tilt = rng.uniform(0.7, 1.3)
    for k in range(1, 41):
        if k * rate.max() > min(1000.0, _top(sr)):
            break
        x += rng.uniform(0.5, 1.0) / k**tilt * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    pulses = (0.5 + 0.5 * np.cos(phase)) ** 2
    noise = _lowpass(rng.standard_normal(n), rng.uniform(250.0, 800.0), sr)
    x = x / np.abs(x).max() + rng.uniform(0.3, 1.0) * pulses * noise / np.abs(noise).max()
    return _finish(_lowpass(x * jitter[cycles], 1200.0, sr) * _fades(n, sr, 0.05, 0.05))


def rain(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    bed = _band(rng.standard_normal(n), rng.uniform(400.0, 1200.0), rng.uniform(5000.0, 8000.0), sr)
    drops = np.zeros(n)
    count = int(rng.poisson(_loguniform(rng, 80.0, 800.0) * seconds)) + 1
    positions, amplitudes = rng.integers(0, n, count), rng.exponential(1.0, count)
    which = rng.integers(0, 4, count)
    for k in range(4):  # four drop sounds: short decaying chirps
        m = max(2, int(rng.uniform(0.008, 0.025) * sr))
        tt = np.arange(m) / sr
        f0, rise = rng.uniform(1500.0, 4500.0), rng.uniform(0.2, 1.0)
        f0 = min(f0, 0.3 * sr, _top(sr) / (1 + rise))  # the chirp ends at f0 * (1 + rise)
        f = f0 * (1 + rise * tt / tt[-1])
        drop = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-tt / rng.uniform(0.002, 0.006))
        sel = which == k
        drops += _scatter(n, positions[sel], amplitudes[sel], drop)
    x = bed / np.std(bed) * rng.uniform(0.15, 0.6) + drops / (np.std(drops) + 1e-12)
    return _finish(x * _fades(n, sr, 0.05, 0.05))


def wind(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    nperseg = min(2 ** int(round(np.log2(0.032 * sr))), n)  # a clip shorter than a frame is one frame
    f, frames, spec = signal.stft(rng.standard_normal(n), fs=sr, nperseg=nperseg)
    centre = _loguniform(rng, 250.0, 1200.0) * np.exp(rng.uniform(0.3, 0.8) * _smooth(frames, rng, 0.08, 0.6))
    width = rng.uniform(0.3, 0.8)  # of the band, in natural-log units of frequency
    logf = np.log(np.maximum(f, 1.0))[:, None]
    band = np.exp(-0.5 * ((logf - np.log(centre)[None, :]) / width) ** 2) * (f < _top(sr))[:, None]
    gusts = np.exp(rng.uniform(0.5, 1.5) * _smooth(frames, rng, 0.1, 0.7))
    x = signal.istft(spec * band * gusts[None, :], fs=sr, nperseg=nperseg)[1][:n]
    x = np.pad(x, (0, n - x.size))
    return _finish(x * _fades(n, sr, 0.1, 0.1))


def knock(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    count = int(rng.integers(2, 6))
    interval = min(rng.uniform(0.12, 0.35), 0.75 * seconds / (count - 1))
    span = (count - 1) * interval
    start = rng.uniform(0, max(0.0, seconds - span - 0.15))
    f0, ratio, tau = rng.uniform(70.0, 220.0), rng.uniform(2.1, 2.8), rng.uniform(0.015, 0.05)
    m = min(n, int(0.2 * sr))
    tt = np.arange(m) / sr
    x = np.zeros(n)
    for k in range(count):
        f = f0 * (1 + 0.03 * rng.standard_normal())
        y = np.sin(2 * np.pi * f * tt) * np.exp(-tt / tau)
        y += 0.4 * np.sin(2 * np.pi * f * ratio * tt) * np.exp(-tt / (0.6 * tau))
        y += 0.25 * _lowpass(rng.standard_normal(m), 1500.0, sr) * np.exp(-tt / 0.002)  # the knuckle
        at = start + k * interval * (1 + 0.1 * rng.uniform(-1, 1) * (k > 0))
        _add(x, int(at * sr), rng.uniform(0.7, 1.0) * y * (1 - np.exp(-tt / 0.0005)))
    return _finish(x)


def clap(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    m = max(2, int(0.03 * sr))
    tt = np.arange(m) / sr

    def one_clap(centre: float) -> np.ndarray:
        burst = _band(rng.standard_normal(m), centre / 1.6, centre * 1.6, sr)
        return burst * np.exp(-tt / rng.uniform(0.003, 0.008)) * (1 - np.exp(-tt / 0.0005))

    x = np.zeros(n)
    if rng.random() < 0.5:  # one person: a few claps at a steady rate
        count = int(rng.integers(3, 13))
        period = min(1.0 / rng.uniform(2.0, 6.0), 0.9 * seconds / count)
        start = rng.uniform(0, max(0.0, seconds - count * period))
        hand = one_clap(rng.uniform(900.0, 2500.0))
        at = start + period * (np.arange(count) + 0.05 * rng.standard_normal(count))
        positions = np.clip((at * sr).astype(int), 0, n - 1)
        x += _scatter(n, positions, rng.uniform(0.7, 1.0, count), hand)
    else:  # an audience: many clappers, each at its own rate, grouped on six hand sounds
        hands = [one_clap(rng.uniform(800.0, 3000.0)) for _ in range(6)]
        for _ in range(int(rng.integers(8, 61))):
            rate = rng.uniform(2.5, 5.5)
            at = np.arange(rng.uniform(0, min(1 / rate, seconds)), seconds, 1 / rate)  # a first clap in the clip
            at = at + 0.02 / rate * rng.standard_normal(at.size)
            positions = np.clip((at * sr).astype(int), 0, n - 1)
            x += _scatter(n, positions, rng.uniform(0.3, 1.0) * rng.uniform(0.7, 1.0, at.size), hands[int(rng.integers(6))])
        x *= _fades(n, sr, rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.5))
    return _finish(x)


def whistle(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _length(seconds, sr)
    t = np.arange(n) / sr
    top = min(3000.0, 0.4 * sr)
    kind = int(rng.integers(3))  # 0 a tune, 1 a slide, 2 a referee's blasts
    gain = np.ones(n)
    if kind == 0:
        notes = rng.uniform(1000.0, top, int(rng.integers(1, 4)))
        times = np.linspace(0, seconds, notes.size + 1)[:-1]
        track = notes[np.searchsorted(times, t, side="right") - 1]
        glide = max(1, int(rng.uniform(0.03, 0.08) * sr))
        f = np.convolve(np.pad(track, glide, mode="edge"), np.ones(glide) / glide, mode="same")[glide:-glide]
    elif kind == 1:
        a, b = rng.uniform(1000.0, top, 2)
        f = a * (b / a) ** (t / seconds)
    else:
        f = np.full(n, rng.uniform(1800.0, top))
        trill = rng.uniform(20.0, 40.0)
        gain = 1 - rng.uniform(0.3, 0.7) * (0.5 + 0.5 * np.sin(2 * np.pi * trill * t))
        blasts = int(rng.integers(1, 4))
        on = (t * blasts / seconds) % 1.0 < rng.uniform(0.5, 0.8)
        gain = gain * np.convolve(on.astype(float), np.ones(int(0.01 * sr) + 1) / (int(0.01 * sr) + 1), mode="same")
    f = f * (1 + rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * rng.uniform(4.0, 7.0) * t))  # vibrato
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = np.sin(phase) + np.where(2 * f < _top(sr), 0.05 * np.sin(2 * phase), 0.0)
    centre = float(np.median(f))
    breath = _band(rng.standard_normal(n), 0.8 * centre, 1.25 * centre, sr)
    x = x + rng.uniform(0.02, 0.08) * breath / np.std(breath)
    return _finish(x * gain * _fades(n, sr, rng.uniform(0.02, 0.06), rng.uniform(0.05, 0.15)))


CLASSES: dict[str, EventFn] = {
    "bell": bell, "beep": beep, "siren": siren, "engine": engine, "rain": rain,
    "wind": wind, "knock": knock, "clap": clap, "whistle": whistle,
}

#: short English descriptions of each class (a clip's text prompts)
DESCRIPTIONS: dict[str, list[str]] = {
    "bell": ["a bell ringing", "church bell chimes", "a metal bell is struck", "the toll of a large bell",
             "a bell rings a few times and fades away"],
    "beep": ["a beep", "electronic beeping", "a device beeps", "short tone beeps", "a series of beeps from a machine"],
    "siren": ["a siren wailing", "an emergency vehicle siren", "a police siren", "an ambulance siren going by",
              "a rising and falling alarm siren"],
    "engine": ["an engine running", "the rumble of a motor", "a car engine idling", "an engine revving up",
               "the low drone of a diesel engine"],
    "rain": ["rain falling", "raindrops pattering", "a rain shower", "heavy rain pouring down", "light drizzle on a roof"],
    "wind": ["wind blowing", "a gusty wind", "wind howling", "a breeze rustling outside", "strong wind gusts"],
    "knock": ["knocking on a door", "someone knocks", "a few knocks on wood", "knuckles rapping on a door",
              "a knock at the door"],
    "clap": ["hands clapping", "applause", "a person claps", "a crowd applauding", "a round of applause"],
    "whistle": ["a whistle", "someone whistling", "a referee blows a whistle", "a high whistling tone",
                "a person whistles a short tune"],
}


def make_event(name: str, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``seconds`` of a sound event of class ``name`` (one of :data:`CLASSES`), float32, peak :data:`PEAK`."""
    try:
        fn = CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown sound-event class {name!r}; known: {', '.join(CLASSES)}") from None
    return fn(float(seconds), int(sample_rate), rng)
