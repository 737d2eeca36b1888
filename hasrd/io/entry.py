"""One corpus item, :class:`Entry`, and how its audio is read (:func:`load_entry`,
:func:`entry_info`, :func:`iter_entry_chunks`).

An entry is usually a whole audio file (``path``). Two kinds of corpora need more:

* a Lhotse cut that covers part of a recording: ``span = (offset, duration)`` in seconds of the
  file; only that part is the entry's audio (its sample 0 is the file's sample at ``offset``);
* a row of a Hugging Face ``datasets`` dataset: ``audio`` is a reference that reads the row's
  samples (:class:`AudioRef`: a ``(dataset, index)`` reference, or the row's encoded bytes held
  in memory for a streamed dataset); ``path`` then only names the dataset.

Every reader of training, teacher-cache, encoding and evaluation audio goes through the three
functions here, which take an :class:`Entry` or a plain path, so those corpora work everywhere
without being copied to audio files. They return what :func:`hasrd.io.audio.load_audio` returns
(float32 ``[channels, samples]``, downmixed and resampled as asked) and raise its
:class:`~hasrd.io.audio.AudioError` for unreadable audio.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from .audio import AudioError, audio_info, iter_audio_chunks, load_audio, resample


class ManifestError(ValueError):
    """A manifest line could not be parsed, or a corpus cannot be read (the message names it)."""


class AudioRef(Protocol):
    """Where a dataset row's samples come from (see :mod:`hasrd.io.corpora`)."""

    #: names the dataset the row belongs to (``hf-dataset:NAME:SPLIT``), for keys and messages
    label: str

    def read(self) -> tuple[np.ndarray, int]:
        """The row's samples, float32 ``[channels, samples]``, at their own rate."""

    def info(self) -> dict:
        """``sample_rate``, ``channels``, ``frames``, ``duration`` (as :func:`audio_info`)."""


@dataclass
class Entry:
    """One item of a corpus.

    Attributes:
        path: the audio file (for a dataset row: the dataset's name, ``hf-dataset:NAME:SPLIT``).
        text: the transcript, if the corpus has one.
        extra: other fields (``speaker``, a JSONL manifest's own keys, ...).
        span: ``(offset, duration)`` in seconds: only this part of ``path`` (a Lhotse cut).
        audio: the samples come from this reference, not from ``path`` (a dataset row).
        id: the corpus's own name of the item (a Lhotse cut or recording id, a dataset's id
            column or row index); None for plain files.
    """

    path: Path
    text: str | None = None
    extra: dict = field(default_factory=dict)
    span: tuple[float, float] | None = None
    audio: AudioRef | None = None
    id: str | None = None

    @property
    def name(self) -> str:
        """What messages and records call the entry: the file, or ``FILE#ID`` / ``hf-dataset:...#ID``."""
        return str(self.path) if self.id is None else f"{self.path}#{self.id}"

    @property
    def key(self) -> str:
        """The entry's identity: the file, the file and its span, or the dataset and the row."""
        if self.audio is not None:
            return f"{self.audio.label}#{self.id}"
        if self.span is not None:
            return f"{self.path}#{self.span[0]:.6f}+{self.span[1]:.6f}"
        return str(self.path)

    def __str__(self) -> str:
        return self.name


def as_entry(item: Entry | str | os.PathLike) -> Entry:
    return item if isinstance(item, Entry) else Entry(Path(item))


def entry_info(item: Entry | str | os.PathLike) -> dict:
    """Sample rate, channels, frames and duration of an entry's audio (of its span, for a cut)."""
    e = as_entry(item)
    if e.audio is not None:
        return e.audio.info()
    info = audio_info(e.path)
    if e.span is None:
        return info
    sr = info["sample_rate"]
    first = int(round(e.span[0] * sr))
    frames = max(0, min(int(round(e.span[1] * sr)), info["frames"] - first))
    return {**info, "frames": frames, "duration": frames / sr if sr else 0.0}


def _window(span: tuple[float, float], start: float, duration: float | None) -> tuple[float, float]:
    """``(start, duration)`` in seconds of the file for a window ``start, duration`` of the span."""
    offset, length = span
    start = max(0.0, float(start))
    left = max(0.0, length - start)
    return offset + start, left if duration is None else max(0.0, min(float(duration), left))


def load_entry(item: Entry | str | os.PathLike, sample_rate: int | None = None, mono: bool = True,
               start: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
    """An entry's audio as :func:`hasrd.io.audio.load_audio` returns a file's: float32
    ``[channels, samples]``; ``start`` and ``duration`` are seconds of the entry (of the cut,
    not of the file it lies in)."""
    e = as_entry(item)
    if e.audio is None:
        if e.span is None:
            return load_audio(e.path, sample_rate, mono, start, duration)
        first, length = _window(e.span, start, duration)
        return load_audio(e.path, sample_rate, mono, first, length)
    audio, sr = e.audio.read()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if not np.isfinite(audio).all():
        raise AudioError(f"{e.name}: audio holds NaN or infinite samples")
    first = int(round(max(0.0, start) * sr))
    last = audio.shape[-1] if duration is None else first + int(round(duration * sr))
    audio = audio[:, first:last]
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sample_rate is not None and sample_rate != sr:
        audio, sr = resample(audio, sr, sample_rate), sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def iter_entry_chunks(item: Entry | str | os.PathLike, sample_rate: int, chunk_seconds: float) -> Iterator[np.ndarray]:
    """An entry's audio as mono ``[1, n]`` chunks at ``sample_rate`` (as
    :func:`hasrd.io.audio.iter_audio_chunks`: each chunk read and resampled on its own, chunk
    boundaries on whole seconds of the source)."""
    e = as_entry(item)
    if e.audio is None:
        if e.span is None:
            yield from iter_audio_chunks(e.path, sample_rate, chunk_seconds)
            return
        info = entry_info(e)
        sr = info["sample_rate"]
        yield from iter_audio_chunks(e.path, sample_rate, chunk_seconds, start=int(round(e.span[0] * sr)),
                                     frames=info["frames"])
        return
    audio, sr = load_entry(e)  # a dataset row is one utterance: decoded whole, then cut
    step = max(1, int(round(chunk_seconds * sr)))
    for k in range(math.ceil(audio.shape[-1] / step)):
        yield resample(audio[:, k * step : (k + 1) * step], sr, sample_rate)


def decode_bytes(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Encoded audio bytes (a dataset's ``{"bytes": ...}``: WAV, FLAC, OGG, MP3, ...) decoded with
    soundfile, float32 ``[channels, samples]``."""
    import soundfile as sf

    try:
        data, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's messages vary by format
        raise AudioError(f"{name}: not readable audio ({_short(exc)})") from None
    return np.ascontiguousarray(data.T), int(sr)


def bytes_info(data: bytes, name: str) -> dict:
    """:func:`audio_info` of encoded audio bytes (the header only)."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:
        raise AudioError(f"{name}: not readable audio ({_short(exc)})") from None
    sr = int(info.samplerate)
    return {"sample_rate": sr, "channels": int(info.channels), "frames": int(info.frames),
            "duration": float(info.frames) / sr if sr else 0.0}


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
