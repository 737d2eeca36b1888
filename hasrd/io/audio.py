"""The one audio loader of hasrd: read, downmix, resample, validate, and write.

Every part of the toolkit (CLI, trainer, evaluator) reads audio through :func:`load_audio`, so a
file that one of them accepts, all of them accept, with the same error for the same fault.
Decoding is done by ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis, ...) and resampling by
``soxr`` (the resampler librosa uses), both well-kept libraries.
"""
from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3")


class AudioError(ValueError):
    """An audio file could not be read or holds unusable samples (the message names the file)."""


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise AudioError(f"{path}: is {kind}, not a regular file (audio is read from files)")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (not readable)")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file")


def audio_info(path: str | os.PathLike) -> dict:
    """Sample rate, channels, frames and duration of an audio file, without reading samples."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile's messages vary by format; keep one error type
        raise AudioError(f"{path}: not a readable audio file ({_short(exc)})") from None
    return {
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "duration": float(info.frames) / float(info.samplerate) if info.samplerate else 0.0,
    }


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``[C, T]`` (or ``[T]``) float audio with soxr's high-quality filter."""
    if orig_sr == target_sr:
        return audio
    if audio.shape[-1] == 0:
        n = 0
        return np.zeros(audio.shape[:-1] + (n,), dtype=np.float32)
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)
    # soxr wants [T, C]
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_sr, target_sr, quality="HQ")
    return np.ascontiguousarray(out.T).astype(np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, samples]`` in [-1, 1].

    Args:
        path: file to read (any format libsndfile reads).
        sample_rate: resample to this rate; ``None`` keeps the file's rate.
        mono: average the channels into one (``[1, samples]``).
        start, duration: read only this window, in seconds of the file.

    Returns:
        ``(audio, sample_rate)``.

    Raises:
        AudioError: missing, empty or unreadable file, or NaN/inf samples. Zero-length and silent
        audio are valid and returned as they are.
    """
    path = Path(path)
    info = audio_info(path)
    sr = info["sample_rate"]
    first = int(round(start * sr))
    frames = -1 if duration is None else int(round(duration * sr))
    try:
        data, sr = sf.read(str(path), start=first, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: not a readable audio file ({_short(exc)})") from None
    audio = np.ascontiguousarray(data.T)  # [C, T]
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sample_rate is not None and sample_rate != sr:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    return audio.astype(np.float32, copy=False), int(sr)


def iter_audio_chunks(
    path: str | os.PathLike, sample_rate: int, chunk_seconds: float, start: int = 0, frames: int = -1
) -> Iterator[np.ndarray]:
    """Yield a long file as mono ``[1, n]`` chunks at ``sample_rate`` with bounded memory.

    Each chunk is read from disk, downmixed and resampled on its own; chunk boundaries fall on
    whole seconds of the source so that resampling ratios stay exact. ``start`` and ``frames``
    (samples of the file; -1: to the end) read only that part of the file (a Lhotse cut).
    """
    path = Path(path)
    info = audio_info(path)
    sr = info["sample_rate"]
    step = max(1, int(round(chunk_seconds * sr)))
    try:
        blocks = sf.blocks(str(path), blocksize=step, dtype="float32", always_2d=True, start=start, frames=frames)
        for block in blocks:
            audio = np.ascontiguousarray(block.T)
            if not np.isfinite(audio).all():
                raise AudioError(f"{path}: audio holds NaN or infinite samples")
            audio = audio.mean(axis=0, keepdims=True)
            yield resample(audio, sr, sample_rate)
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{path}: not a readable audio file ({_short(exc)})") from None


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``[C, T]`` or ``[T]`` float audio atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.T
    audio = np.clip(audio, -1.0, 1.0)
    # the same write-then-rename as hasrd.io.atomic, written out here because this module must
    # stay importable on its own (scripts/make_corpus.py loads it by path, without hasrd)
    # (the name .NAME.HOST.PID.XXXXXXXX.tmp lets hasrd.io.atomic sweep it after a kill -9; loaded by
    # path, without hasrd, this module writes the same names but sweeps nothing)
    try:
        from hasrd.io.atomic import sweep_once
    except ImportError:
        pass
    else:
        sweep_once(path.parent)
    host = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0]) or "host"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{host}.{os.getpid()}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        sf.write(tmp, audio, sample_rate, subtype=subtype, format=_format_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}.get(ext, "WAV")


def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """All audio files under ``root`` (sorted, so every process sees the same order)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
