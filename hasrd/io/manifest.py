"""Corpus manifests: a JSONL or TSV list of audio files with optional transcripts.

JSONL: one object a line with at least ``"path"`` (absolute, or relative to the manifest's folder)
and optionally ``"text"``, ``"speaker"``, ``"duration"``, and ``"noisy"`` (a speech-enhancement
pair's noisy file, resolved like ``"path"``: see :data:`PATH_FIELDS`).
TSV: ``path<TAB>text`` a line (text optional); a first line starting with ``path`` is a header.
A directory stands for every audio file below it, without transcripts.

Two more kinds of corpus are read into the same :class:`Entry` list (:mod:`hasrd.io.corpora`):
Lhotse manifests (a CutSet or RecordingSet ``*.jsonl.gz`` / ``*.jsonl``, told apart from hasrd's
own JSONL by their first line) and Hugging Face ``datasets`` audio datasets
(``hf-dataset:NAME_OR_PATH[:SPLIT][?streaming=1&...]``). Both need the ``corpora`` extra.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .audio import find_audio_files
from .entry import Entry, ManifestError

#: extra JSONL fields that name files: resolved like ``"path"`` into a :class:`~pathlib.Path`
PATH_FIELDS = ("noisy",)

__all__ = ["PATH_FIELDS", "Entry", "ManifestError", "read_manifest", "read_rows", "read_transcripts"]


def read_manifest(source: str | os.PathLike, streaming_ok: bool = False) -> list[Entry]:
    """Entries of a JSONL/TSV manifest, of every audio file under a directory, of a Lhotse
    manifest or of a Hugging Face dataset (``hf-dataset:...``, see :mod:`hasrd.io.corpora`).

    ``streaming_ok``: a streamed dataset (``?streaming=1``) gives an iterator of entries instead
    of a list; readers that go through the corpus once in order (``hasrd encode``, the evaluator)
    accept it, the others (training, the teacher cache) get a :class:`ManifestError`.
    """
    from . import corpora

    if corpora.is_dataset_spec(source):
        return corpora.read_dataset(str(source), streaming_ok=streaming_ok)
    source = Path(source)
    if source.is_dir():
        return [Entry(p) for p in find_audio_files(source)]
    if not source.exists():
        raise ManifestError(f"{source}: no such file or directory")
    if corpora.lhotse_kind(source) is not None:
        return corpora.read_lhotse(source)
    base = source.parent
    entries: list[Entry] = []
    is_jsonl = source.suffix.lower() in (".jsonl", ".json")
    with open(source, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if is_jsonl:
                try:
                    obj = json.loads(line)
                    path = obj.pop("path")
                except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
                    raise ManifestError(f"{source}:{lineno}: expected a JSON object with a 'path'") from None
                text = obj.pop("text", None)
            else:
                cols = line.split("\t")
                if lineno == 1 and cols[0].strip().lower() == "path":
                    continue
                path, text, obj = cols[0], (cols[1] if len(cols) > 1 else None), {}
            for key in PATH_FIELDS:
                if obj.get(key) is not None:
                    obj[key] = _resolve(obj[key], base)
            entries.append(Entry(_resolve(path, base), text, obj))
    return entries


def read_rows(manifest: str | os.PathLike, required: tuple[str, ...], path_fields: tuple[str, ...] = ("path",),
              what: str = "", allow_empty: bool = False) -> list[dict]:
    """The rows of a task's JSONL manifest (the events, prompts and LM recipes write them), as dicts.

    Every row must be a JSON object with a non-empty value for each key of ``required``; the
    keys of ``path_fields`` a row has are resolved against the manifest's folder into
    :class:`~pathlib.Path`. ``what`` says in the errors what the file should be (e.g. "a manifest
    of python -m hasrd.lm.recipe"). Raises :class:`FileNotFoundError` for a missing file and
    :class:`ValueError` (``FILE:LINE: ...``) for a bad line or, unless ``allow_empty``, no rows.
    """
    manifest = Path(manifest)
    hint = f" ({what})" if what else ""
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such manifest{hint}")
    need = ", ".join(required)
    rows = []
    with open(manifest, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not all(row.get(k) for k in required):
                    raise KeyError
            except (json.JSONDecodeError, KeyError, AttributeError):
                raise ValueError(f"{manifest}:{lineno}: expected a JSON object with {need}{hint}") from None
            for key in path_fields:
                if row.get(key):
                    row[key] = _resolve(row[key], manifest.parent)
            rows.append(row)
    if not rows and not allow_empty:
        raise ValueError(f"{manifest}: no rows{hint}")
    return rows


def spread_indices(n_items: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_items)``, first and last included (all of them
    when there are no more than ``n``): a validation subset that holds some of every part."""
    if n <= 0:
        return []
    if n_items <= n:
        return list(range(n_items))
    import numpy as np

    return np.linspace(0, n_items - 1, n).round().astype(int).tolist()


def spread(entries: list, n: int) -> list:
    """``n`` entries spread evenly over ``entries`` (:func:`spread_indices`), so a validation set
    drawn from several sources holds some of each."""
    return [entries[i] for i in spread_indices(len(entries), n)]


def _resolve(path, base: Path) -> Path:
    p = Path(str(path))
    return p if p.is_absolute() else base / p


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """A ``name<TAB>text`` TSV as a dict keyed by file stem (for evaluation)."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if "\t" in line:
                key, text = line.rstrip("\n").split("\t", 1)
                out[Path(key).stem] = text
    return out
