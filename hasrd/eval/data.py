"""The evaluation set: real speech with transcripts, read through hasrd's one audio loader."""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hasrd.io.audio import AUDIO_EXTENSIONS, load_audio
from hasrd.io.entry import load_entry
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
    """Utterances of a folder (every audio file below it), a JSONL/TSV manifest, a Lhotse
    manifest, a Hugging Face dataset (``hf-dataset:...``, see :mod:`hasrd.io.corpora`) or one
    audio file. Items of a Lhotse manifest or a dataset are named by their id (the cut's, the
    recording's, the id column's or the row index), and a transcripts TSV is keyed by that id.

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
    from hasrd.io.corpora import is_dataset_spec, safe_name

    spec = data if is_dataset_spec(data) else None  # kept as a string: hf-dataset:NAME:SPLIT?...
    src = Path(data) if data is not None else DEFAULT_EVAL_DIR
    if src.is_file() and src.suffix.lower() in AUDIO_EXTENSIONS:  # one audio file
        entries = [Entry(src)]
    else:
        entries = read_manifest(spec or src, streaming_ok=True)
        if not isinstance(entries, list):  # a streamed dataset: read once, the first --limit rows only
            entries = list(entries if limit is None else itertools.islice(entries, max(0, int(limit))))
    if transcripts is None and src.is_dir() and (src / TRANSCRIPTS_NAME).is_file():
        transcripts = src / TRANSCRIPTS_NAME
    texts = read_transcripts(transcripts) if transcripts is not None else {}
    items = sorted(((e, e.extra.get(NOISY_KEY)) for e in entries), key=lambda it: (it[0].name, str(it[1] or "")))
    if limit is not None:
        items = items[: max(0, int(limit))]
    named = [noisy or e.path for e, noisy in items]  # the file an utterance is named after
    stems = [p.stem for p in named]
    clean_cache: dict[str, np.ndarray] = {}
    out = []
    for (e, noisy), p, stem in zip(items, named, stems):
        if e.id is not None and noisy is None:  # a Lhotse cut or recording, a dataset row: its id
            uid, stem = safe_name(e.id), e.id
        else:
            uid = stem if stems.count(stem) == 1 else str(p).replace(os.sep, "_")
        if e.key not in clean_cache:  # a file, a cut's span of one, or a dataset row
            clean_cache[e.key] = load_entry(e, sample_rate=EVAL_SR, mono=True)[0][0]
        audio = clean_cache[e.key]
        extra = {k: v for k, v in e.extra.items() if k != NOISY_KEY}
        text = texts.get(stem, texts.get(e.path.stem, e.text)) if e.id is None else texts.get(stem, e.text)
        # what names the clean item (one per clean file or cut or row: the probes take each once)
        u = Utterance(uid, e.path if e.id is None else Path(e.name), audio, text, extra)
        if noisy is not None:
            u.input, u.input_path = _load_pair(audio, noisy), noisy
        out.append(u)
    if not out:
        raise FileNotFoundError(f"{src}: no audio files found")
    return out
