"""Corpus manifests: a JSONL or TSV list of audio files with optional transcripts.

JSONL: one object a line with at least ``"path"`` (absolute, or relative to the manifest's folder)
and optionally ``"text"``, ``"speaker"``, ``"duration"``, and ``"noisy"`` (a speech-enhancement
pair's noisy file, resolved like ``"path"``: see :data:`PATH_FIELDS`).
TSV: ``path<TAB>text`` a line (text optional); a first line starting with ``path`` is a header.
A directory stands for every audio file below it, without transcripts.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .audio import find_audio_files

#: extra JSONL fields that name files: resolved like ``"path"`` into a :class:`~pathlib.Path`
PATH_FIELDS = ("noisy",)


class ManifestError(ValueError):
    """A manifest line could not be parsed (the message names the file and line)."""


@dataclass
class Entry:
    path: Path
    text: str | None = None
    extra: dict = field(default_factory=dict)


def read_manifest(source: str | os.PathLike) -> list[Entry]:
    """Entries of a JSONL/TSV manifest, or of every audio file under a directory."""
    source = Path(source)
    if source.is_dir():
        return [Entry(p) for p in find_audio_files(source)]
    if not source.exists():
        raise ManifestError(f"{source}: no such file or directory")
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
