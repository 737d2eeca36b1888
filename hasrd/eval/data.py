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
    id: str
    path: Path
    audio: np.ndarray  # 1-D float32 at EVAL_SR
    text: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.audio.size / EVAL_SR


def load_eval_set(data: str | os.PathLike | None = None, transcripts: str | os.PathLike | None = None,
                  limit: int | None = None) -> list[Utterance]:
    """Utterances of a folder (every audio file below it), a JSONL/TSV manifest or one audio file.

    Transcripts come from the manifest's text, overridden by ``transcripts`` (a
    ``name<TAB>text`` TSV keyed by file stem); a folder without ``transcripts`` uses its own
    ``transcripts.tsv`` if it has one. ``None`` means the bundled set. Audio is downmixed and
    resampled to 16 kHz.
    """
    src = Path(data) if data is not None else DEFAULT_EVAL_DIR
    if src.is_file() and src.suffix.lower() in AUDIO_EXTENSIONS:  # one audio file
        entries = [Entry(src)]
    else:
        entries = read_manifest(src)
    if transcripts is None and src.is_dir() and (src / TRANSCRIPTS_NAME).is_file():
        transcripts = src / TRANSCRIPTS_NAME
    texts = read_transcripts(transcripts) if transcripts is not None else {}
    entries = sorted(entries, key=lambda e: str(e.path))
    if limit is not None:
        entries = entries[: max(0, int(limit))]
    stems = [e.path.stem for e in entries]
    out = []
    for e, stem in zip(entries, stems):
        uid = stem if stems.count(stem) == 1 else str(e.path).replace(os.sep, "_")
        audio, _ = load_audio(e.path, sample_rate=EVAL_SR, mono=True)
        out.append(Utterance(uid, e.path, audio[0], texts.get(stem, e.text), dict(e.extra)))
    if not out:
        raise FileNotFoundError(f"{src}: no audio files found")
    return out
