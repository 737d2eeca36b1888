"""Signal metrics: delay measurement and alignment, PESQ, STOI/ESTOI, SI-SDR, log-mel distance.

All functions take 1-D float arrays at :data:`EVAL_SR` (16 kHz) unless they say otherwise. The
heavy libraries (pesq, pystoi, librosa) are imported inside the functions, so importing this
module is cheap.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

EVAL_SR = 16000


# ---- delay ---------------------------------------------------------------------------------


ENVELOPE_HOP = 16  # samples (1 ms at 16 kHz): resolution of the phase-blind coarse search
ENVELOPE_WINDOW = 512


def _xcorr(a: np.ndarray, b: np.ndarray, lags: np.ndarray, rows_per_block: int = 16) -> np.ndarray:
    """``sum_n a[..., n] * b[..., n + lag]`` for each lag (FFT along the last axis, summed over the
    others, ``rows_per_block`` rows at a time so that the spectra of long inputs are never all in
    memory at once)."""
    n = a.shape[-1] + b.shape[-1] - 1
    nfft = 1 << (n - 1).bit_length()
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    spec = np.zeros(nfft // 2 + 1, dtype=np.complex128)
    for i in range(0, a2.shape[0], rows_per_block):
        block = np.fft.rfft(b2[i : i + rows_per_block], nfft) * np.conj(np.fft.rfft(a2[i : i + rows_per_block], nfft))
        spec += block.sum(axis=0)
    corr = np.fft.irfft(spec, nfft)  # negative lags wrapped to the end
    return corr[lags % nfft]


def _log_spectrogram(x: np.ndarray, frames_per_block: int = 2048) -> np.ndarray:
    """``[bins, frames]`` log power at hop :data:`ENVELOPE_HOP`, each bin's mean removed; the floor
    (60 dB under the loudest cell) keeps silence from counting. Frames are cut and transformed a
    block at a time: at a 1 ms hop the windows overlap 32-fold, and all of them at once would take
    32 times the signal's memory."""
    pad = np.concatenate([x, np.zeros(ENVELOPE_WINDOW, dtype=x.dtype)])
    n_frames = max(1, x.size // ENVELOPE_HOP)
    window = np.hanning(ENVELOPE_WINDOW)
    power = np.empty((n_frames, ENVELOPE_WINDOW // 2 + 1))
    for start in range(0, n_frames, frames_per_block):
        frames = np.arange(start, min(n_frames, start + frames_per_block))
        idx = np.arange(ENVELOPE_WINDOW)[None, :] + ENVELOPE_HOP * frames[:, None]
        power[frames] = np.abs(np.fft.rfft(pad[idx] * window, axis=1)) ** 2
    logp = np.log10(power + power.max() * 1e-6 + 1e-20).T
    return logp - logp.mean(axis=1, keepdims=True)


def estimate_delay(reference: np.ndarray, degraded: np.ndarray, max_lag: int) -> int:
    """Lag in samples by which ``degraded`` trails ``reference`` (negative: it leads), in
    ``-max_lag..max_lag``. Silent input gives 0.

    Two steps. The coarse lag (1 ms steps) maximises the cross-correlation of the two log power
    spectrograms, which does not depend on the waveform's phase: vocoders and neural decoders
    that regenerate phase (Codec 2, GAN or iSTFT generators) have no reliable waveform
    cross-correlation peak, and a waveform-only search lands tens of ms off on them. The fine lag
    maximises the waveform cross-correlation within +-2 ms of the coarse one, which makes it exact
    for waveform-preserving systems and leaves a phase-regenerating one within 2 ms.
    """
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    if max_lag < 0:
        raise ValueError("max_lag must be >= 0")
    if ref.size == 0 or deg.size == 0 or not np.any(ref) or not np.any(deg):
        return 0
    h = ENVELOPE_HOP
    frame_lags = np.arange(-(max_lag // h), max_lag // h + 1)
    a, b = _log_spectrogram(ref), _log_spectrogram(deg)
    frame_lags = frame_lags[(frame_lags > -a.shape[1]) & (frame_lags < b.shape[1])]
    coarse = int(frame_lags[int(np.argmax(_xcorr(a, b, frame_lags)))]) * h
    lags = np.arange(max(-max_lag, coarse - 2 * h), min(max_lag, coarse + 2 * h) + 1)
    lags = lags[(lags > -ref.size) & (lags < deg.size)]
    if lags.size == 0:
        return coarse
    return int(lags[int(np.argmax(_xcorr(ref, deg, lags)))])


def shift(degraded: np.ndarray, lag: int, length: int) -> np.ndarray:
    """``degraded`` moved earlier by ``lag`` samples (later if negative), cut or zero-padded to ``length``."""
    deg = np.asarray(degraded, dtype=np.float32)
    if lag > 0:
        deg = deg[lag:]
    elif lag < 0:
        deg = np.concatenate([np.zeros(-lag, dtype=np.float32), deg])
    if deg.size >= length:
        return deg[:length]
    return np.concatenate([deg, np.zeros(length - deg.size, dtype=np.float32)])


def align(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = EVAL_SR,
          max_delay_ms: float = 100.0) -> tuple[np.ndarray, int]:
    """Measure the delay of ``degraded`` and undo it; returns ``(aligned, delay_samples)``.

    The aligned signal has the reference's length (cut, or zero-padded at the end).
    """
    max_lag = int(round(max_delay_ms * sample_rate / 1000.0))
    lag = estimate_delay(reference, degraded, max_lag)
    return shift(degraded, lag, len(reference)), lag


# ---- fidelity --------------------------------------------------------------------------------


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-10) -> float:
    """Scale-invariant SDR in dB: ``10 log10(|a s|^2 / |a s - x|^2)`` with ``a = <x, s> / |s|^2``
    on zero-mean signals. Identical signals give a very large value (about 100 dB and up)."""
    s = np.asarray(reference, dtype=np.float64)
    x = np.asarray(estimate, dtype=np.float64)
    n = min(s.size, x.size)
    s, x = s[:n] - s[:n].mean(), x[:n] - x[:n].mean()
    alpha = np.dot(x, s) / (np.dot(s, s) + eps)
    target = alpha * s
    noise = x - target
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def pesq_scores(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = EVAL_SR) -> dict:
    """ITU-T P.862.2 wide-band PESQ (MOS-LQO) at 16 kHz and P.862.1 narrow-band PESQ at 8 kHz.

    A value is NaN when the pesq library refuses the signal (for example, no speech found).
    """
    from pesq import pesq

    from hasrd.io.audio import resample

    out = {"pesq_wb": math.nan, "pesq_nb": math.nan}
    ref16 = resample(np.asarray(reference, np.float32), sample_rate, 16000)
    deg16 = resample(np.asarray(degraded, np.float32), sample_rate, 16000)
    ref8, deg8 = resample(ref16, 16000, 8000), resample(deg16, 16000, 8000)
    for key, sr, mode, r, d in (("pesq_wb", 16000, "wb", ref16, deg16), ("pesq_nb", 8000, "nb", ref8, deg8)):
        try:
            out[key] = float(pesq(sr, r.astype(np.float64), d.astype(np.float64), mode))
        except Exception:  # pesq raises its own error types for silence / too-short input
            out[key] = math.nan
    return out


def stoi_scores(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = EVAL_SR) -> dict:
    """Short-time objective intelligibility (Taal et al. 2011) and its extended form ESTOI
    (Jensen & Taal 2016), both in 0..1, via pystoi (which resamples to 10 kHz itself)."""
    from pystoi import stoi

    ref = np.asarray(reference, np.float64)
    deg = np.asarray(degraded, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns on very short input and returns 1e-5
        return {
            "stoi": float(stoi(ref, deg, sample_rate, extended=False)),
            "estoi": float(stoi(ref, deg, sample_rate, extended=True)),
        }


MEL_N_FFT = 1024
MEL_HOP = 256
MEL_BANDS = 80


def log_mel(audio: np.ndarray, sample_rate: int = EVAL_SR) -> np.ndarray:
    """``log10`` of an 80-band magnitude mel spectrogram (1024-point FFT, hop 256), floored at 1e-5."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(audio, np.float32), sr=sample_rate, n_fft=MEL_N_FFT, hop_length=MEL_HOP,
        n_mels=MEL_BANDS, power=1.0, center=True,
    )
    return np.log10(np.maximum(mel, 1e-5))


def mel_distance(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = EVAL_SR) -> float:
    """Mean absolute difference of :func:`log_mel` spectrograms (an L1 distance; 0 = identical)."""
    a, b = log_mel(reference, sample_rate), log_mel(degraded, sample_rate)
    n = min(a.shape[1], b.shape[1])
    return float(np.mean(np.abs(a[:, :n] - b[:, :n])))


PITCH_FMIN, PITCH_FMAX, PITCH_HOP_S = 50.0, 500.0, 0.01


def pitch_track(audio: np.ndarray, sample_rate: int = EVAL_SR) -> tuple[np.ndarray, np.ndarray]:
    """``(f0 Hz, voiced flags)`` every 10 ms by probabilistic YIN (``librosa.pyin``, 50-500 Hz,
    64 ms frames at 16 kHz); f0 is NaN where unvoiced."""
    import librosa

    hop = int(round(PITCH_HOP_S * sample_rate))
    frame = 1 << int(np.ceil(np.log2(0.064 * sample_rate)))
    f0, voiced, _ = librosa.pyin(np.asarray(audio, np.float32), fmin=PITCH_FMIN, fmax=PITCH_FMAX,
                                 sr=sample_rate, frame_length=frame, hop_length=hop)
    return f0, np.asarray(voiced, bool)


def pitch_scores(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = EVAL_SR,
                 reference_track: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """How well the decoded audio keeps the original's pitch (both already aligned):

    * ``f0_cents``: median absolute F0 difference in cents over the frames both call voiced
      (NaN if there are none);
    * ``vuv_error``: percentage of frames whose voiced/unvoiced decisions differ.

    ``reference_track``: the reference's :func:`pitch_track`, if already computed."""
    f_ref, v_ref = reference_track if reference_track is not None else pitch_track(reference, sample_rate)
    f_deg, v_deg = pitch_track(degraded, sample_rate)
    n = min(len(v_ref), len(v_deg))
    f_ref, v_ref, f_deg, v_deg = f_ref[:n], v_ref[:n], f_deg[:n], v_deg[:n]
    both = v_ref & v_deg
    cents = 1200.0 * np.abs(np.log2(f_deg[both] / f_ref[both]))
    return {"f0_cents": float(np.median(cents)) if cents.size else float("nan"),
            "vuv_error": float(100.0 * np.mean(v_ref != v_deg)) if n else float("nan")}


def fidelity(reference: np.ndarray, aligned: np.ndarray, sample_rate: int = EVAL_SR,
             reference_track: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Every full-reference metric of an already aligned pair (``reference_track``: see
    :func:`pitch_scores`)."""
    out = {}
    out.update(pesq_scores(reference, aligned, sample_rate))
    out.update(stoi_scores(reference, aligned, sample_rate))
    out["si_sdr"] = si_sdr(reference, aligned)
    out["mel_distance"] = mel_distance(reference, aligned, sample_rate)
    out.update(pitch_scores(reference, aligned, sample_rate, reference_track))
    return out
