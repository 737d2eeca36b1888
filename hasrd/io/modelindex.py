"""What a token file can leave out: the facts of hasrd's built-in models, without loading them.

A version 3 ``.hsrd`` file (``docs/token_files.md``) made by a built-in model records only the
first 4 bytes of the model's fingerprint; the model's codec name, full fingerprint, sample rate,
hop length and codebook sizes come from ``hasrd/pretrained/builtin_index.json``, read here with
the standard library only (``hasrd info`` and ``hasrd decode`` must not need torch to learn which
model made a file).

The index is written by ``scripts/make_builtin_index.py`` (which loads the built-in models) and
checked against the real models by ``tests/io/test_modelindex.py``. It is **append-only**: when a
built-in model is replaced, its entry stays, marked ``"current": false``, so that the files it
wrote stay readable (``hasrd info``, ``load_tokens``) by every later hasrd. File format::

    {"format": "hasrd-builtin-index", "format_version": 1,
     "models": [{"name": "default", "current": true, "codec": "hasrd",
                 "fingerprint": "89bd8463b891c42a", "sample_rate": 16000, "hop_length": 320,
                 "frame_rate": 50.0, "codebook_sizes": [1024, ...]}, ...]}

No two entries may share their first 8 hex digits (the prefix a file records); the loader
refuses an index where they do.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

INDEX_FORMAT = "hasrd-builtin-index"
INDEX_FORMAT_VERSION = 1
INDEX_PATH = Path(__file__).resolve().parent.parent / "pretrained" / "builtin_index.json"
#: hex digits of the fingerprint a version 3 token file records (4 bytes)
PREFIX_HEX = 8
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_ENTRY_KEYS = ("name", "current", "codec", "fingerprint", "sample_rate", "hop_length", "frame_rate", "codebook_sizes")


class BuiltinIndexError(ValueError):
    """The built-in index file is malformed (a packaging fault, not a fault of a token file)."""


def entry_of(name: str, codec: Any) -> dict:
    """The index entry of built-in model ``name`` from the loaded ``codec`` (any
    :class:`hasrd.codecs.Codec`; nothing is imported here)."""
    return {
        "name": name,
        "current": True,
        "codec": codec.codec_name,
        "fingerprint": codec.fingerprint(),
        "sample_rate": int(codec.sample_rate),
        "hop_length": int(codec.hop_length),
        "frame_rate": float(codec.frame_rate),
        "codebook_sizes": [int(k) for k in codec.codebook_sizes],
    }


def merged_index(current: list[dict], previous: dict | None) -> dict:
    """The index to write: the ``current`` entries (one per installed built-in model), then every
    entry of ``previous`` whose fingerprint is not among them, kept with ``"current": false``."""
    fps = {e["fingerprint"] for e in current}
    retired = [dict(e, current=False) for e in (previous or {}).get("models", []) if e["fingerprint"] not in fps]
    index = {"format": INDEX_FORMAT, "format_version": INDEX_FORMAT_VERSION, "models": list(current) + retired}
    _check(index)
    return index


def _check(index: Any) -> list[dict]:
    """The entries of a parsed index, each checked; BuiltinIndexError on any fault."""
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise BuiltinIndexError(f"not a {INDEX_FORMAT} file")
    if index.get("format_version") != INDEX_FORMAT_VERSION:
        raise BuiltinIndexError(f"index format_version {index.get('format_version')!r}, this hasrd reads {INDEX_FORMAT_VERSION}")
    models = index.get("models")
    if not isinstance(models, list):
        raise BuiltinIndexError("index has no list of models")
    seen: dict[str, str] = {}
    for e in models:
        if not isinstance(e, dict) or any(k not in e for k in _ENTRY_KEYS):
            raise BuiltinIndexError(f"index entry lacks one of {', '.join(_ENTRY_KEYS)}")
        fp = e["fingerprint"]
        if not isinstance(fp, str) or not _FINGERPRINT.fullmatch(fp):
            raise BuiltinIndexError(f"index entry {e['name']!r}: fingerprint must be 16 hex digits")
        sizes = e["codebook_sizes"]
        if not (isinstance(e["sample_rate"], int) and isinstance(e["hop_length"], int) and e["sample_rate"] > 0
                and e["hop_length"] > 0 and isinstance(sizes, list) and sizes
                and all(isinstance(k, int) and k >= 2 for k in sizes)):
            raise BuiltinIndexError(f"index entry {e['name']!r}: bad rates or codebook sizes")
        if fp[:PREFIX_HEX] in seen:
            raise BuiltinIndexError(f"index entries {seen[fp[:PREFIX_HEX]]!r} and {e['name']!r} share the fingerprint "
                              f"prefix {fp[:PREFIX_HEX]}")
        seen[fp[:PREFIX_HEX]] = e["name"]
    return models


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple[dict, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()  # an installation without built-in models: every file describes its model
    try:
        index = json.loads(text)
    except ValueError:
        raise BuiltinIndexError(f"{path}: not valid JSON") from None
    return tuple(_check(index))


def entries(path: str | Path | None = None) -> tuple[dict, ...]:
    """Every entry of the index (current and retired), read once per process."""
    return _load(str(path or INDEX_PATH))


def by_prefix(prefix: str, path: str | Path | None = None) -> dict | None:
    """The entry whose fingerprint starts with ``prefix`` (8 hex digits), if any."""
    for e in entries(path):
        if e["fingerprint"][:PREFIX_HEX] == prefix:
            return e
    return None


def by_fingerprint(fingerprint: str, path: str | Path | None = None) -> dict | None:
    """The entry with exactly this (16-hex-digit) fingerprint, if any."""
    for e in entries(path):
        if e["fingerprint"] == fingerprint:
            return e
    return None


def builtin_name(codec_name: str, fingerprint: str, path: str | Path | None = None) -> str | None:
    """The name of the installed (current) built-in model with this codec name and fingerprint."""
    e = by_fingerprint(fingerprint, path)
    return e["name"] if e is not None and e["current"] and e["codec"] == codec_name else None
