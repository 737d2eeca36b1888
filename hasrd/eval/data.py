"""The evaluation set: real speech with transcripts, read through hasrd's one audio loader."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hasrd.io.audio import AUDIO_EXTENSIONS, load_audio
from hasrd.io.manifest import Entry, read_manifest, read_transcripts

from .metrics import EVAL_SR

#: The bundled set (13 utterances, 4 speakers, 51 s; see SOURCES.md there). Evaluation only.
DEFAULT_EVAL_DIR = Path(__file__).resolve().parent.parent / "assets" / "eval"
TRANSCRIPTS_NAME = "transcripts.tsv"


@dataclass
class Utterance:
    """One evaluation item: ``audio`` is the clean reference every metric compares against;
    ``input`` (speech-enhancement sets only) is the noisy audio the systems process instead."""

    id: str
    path: Path
    audio: np.ndarray  # 1-D float32 at EVAL_SR
    text: str | None = None
    extra: dict = field(default_factory=dict)
    input: np.ndarray | None = None  # 1-D float32 at EVAL_SR, same length as audio
    input_path: Path | None = None

    @property
    def duration(self) -> float:
        return self.audio.size / EVAL_SR


#: The manifest field naming an utterance's noisy version (JSONL manifests).
NOISY_KEY = "noisy"


def _load_pair(clean: np.ndarray, noisy_path: Path) -> np.ndarray:
    """The noisy file at EVAL_SR; it must be exactly as long as its clean reference."""
    noisy, _ = load_audio(noisy_path, sample_rate=EVAL_SR, mono=True)
    if noisy.shape[-1] != clean.size:
        raise ValueError(f"{noisy_path}: {noisy.shape[-1]} samples at {EVAL_SR} Hz, but its clean reference "
                         f"has {clean.size}; a noisy file must be exactly as long as its clean file")
    return noisy[0]


def load_eval_set(data: str | os.PathLike | None = None, transcripts: str | os.PathLike | None = None,
                  limit: int | None = None) -> list[Utterance]:
    """Utterances of a folder (every audio file below it), a JSONL/TSV manifest or one audio file.

    Transcripts come from the manifest's text, overridden by ``transcripts`` (a
    ``name<TAB>text`` TSV keyed by file stem); a folder without ``transcripts`` uses its own
    ``transcripts.tsv`` if it has one. ``None`` means the bundled set. Audio is downmixed and
    resampled to 16 kHz.

    A JSONL entry with a ``"noisy"`` field (a path like ``"path"``) is a speech-enhancement item:
    the noisy file becomes :attr:`Utterance.input` (what systems process), the ``"path"`` file
    stays the clean reference, and the utterance is named after the noisy file (several noisy
    versions may share one clean file). Its other fields (``"snr"``, ``"noise"``, ...) stay in
    :attr:`Utterance.extra`.
    """
    src = Path(data) if data is not None else DEFAULT_EVAL_DIR
    if src.is_file() and src.suffix.lower() in AUDIO_EXTENSIONS:  # one audio file
        entries = [Entry(src)]
    else:
        entries = read_manifest(src)
    if transcripts is None and src.is_dir() and (src / TRANSCRIPTS_NAME).is_file():
        transcripts = src / TRANSCRIPTS_NAME
    texts = read_transcripts(transcripts) if transcripts is not None else {}
    items = sorted(((e, e.extra.get(NOISY_KEY)) for e in entries), key=lambda it: (str(it[0].path), str(it[1] or "")))
    if limit is not None:
        items = items[: max(0, int(limit))]
    named = [noisy or e.path for e, noisy in items]  # the file an utterance is named after
    stems = [p.stem for p in named]
    clean_cache: dict[Path, np.ndarray] = {}
    out = []
    for (e, noisy), p, stem in zip(items, named, stems):
        uid = stem if stems.count(stem) == 1 else str(p).replace(os.sep, "_")
        if e.path not in clean_cache:
            clean_cache[e.path] = load_audio(e.path, sample_rate=EVAL_SR, mono=True)[0][0]
        audio = clean_cache[e.path]
        extra = {k: v for k, v in e.extra.items() if k != NOISY_KEY}
        text = texts.get(stem, texts.get(e.path.stem, e.text))
        u = Utterance(uid, e.path, audio, text, extra)
        if noisy is not None:
            u.input, u.input_path = _load_pair(audio, noisy), noisy
        out.append(u)
    if not out:
        raise FileNotFoundError(f"{src}: no audio files found")
    return out
