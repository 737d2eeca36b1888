"""Corpora beyond folders and hasrd's JSONL/TSV: Lhotse manifests and Hugging Face datasets.

Both are read into :class:`~hasrd.io.entry.Entry` lists by :func:`hasrd.io.manifest.read_manifest`,
so training (``data.train``, ``data.val``), ``hasrd encode``, the teacher cache and
``evaluate.py --data`` take them alike. ``lhotse`` and ``datasets`` are imported only when such a
corpus is given (``pip install "hasrd[corpora]"``).

**Lhotse.** A CutSet or RecordingSet file as lhotse writes it (``cuts_*.jsonl.gz``,
``recordings_*.jsonl.gz``; ``.jsonl`` too). The rule: a ``.jsonl.gz`` manifest is always read as
Lhotse; a ``.jsonl``/``.json`` one is Lhotse when its first line is a Lhotse object (a recording:
``sources`` and ``sampling_rate``; a cut: ``type`` ``MonoCut``/``MultiCut``/... or a ``recording``
with ``start`` and ``duration``) rather than an object with hasrd's ``path``. Each cut or
recording is one entry: the audio file of its recording's ``file`` source (relative paths as
lhotse reads them, from the current folder, else from the manifest's folder), the texts of its
supervisions joined by spaces, the first supervision's speaker, and ``id`` the cut's (recording's)
id. A cut that covers part of its recording carries ``span = (start, duration)``, and only that
part is read. A RecordingSet takes its texts from the SupervisionSet beside it
(``supervisions`` in place of ``recordings`` in the file name) when there is one. Refused with
one line: a SupervisionSet alone, mixed or padded cuts, non-file sources, recordings with
transforms other than resampling, and a manifest any of whose audio files is missing (the
count and the first one named).

**Hugging Face datasets.** ``hf-dataset:NAME_OR_PATH[:SPLIT][?OPTIONS]``: a ``save_to_disk``
folder (a Dataset or a DatasetDict), a local folder ``load_dataset`` reads (data files, a hub
snapshot), or a hub dataset id resolved from the local hub cache (a snapshot made by
``hf download NAME --repo-type dataset``) or the local datasets cache; the hub is contacted only
when ``HF_HUB_OFFLINE`` is not set (read at each call, as :mod:`hasrd.hub` does). ``SPLIT`` may be
left out when there is one split. ``OPTIONS`` (``&``-joined): ``streaming=1`` (stream rows
instead of opening the dataset: no Arrow cache is written; read once in order, so for
``hasrd encode`` and the evaluator only), ``config=NAME`` (the dataset's configuration, e.g.
``clean``), ``audio=COL``, ``text=COL``, ``id=COL``, ``speaker=COL`` (columns; by default the audio
column is the one of type ``Audio`` or named ``audio``, the others the first of the usual names).
Nothing is copied to audio files: an entry holds a ``(dataset, index)`` reference
(:class:`DatasetRow`) that reads the row's encoded audio from the memory-mapped dataset and
decodes it with soundfile (so no ``torchcodec``/FFmpeg is needed), or, streamed, the row's encoded
bytes in memory (:class:`RowAudio`). ``id`` is the id column's value when it has one and it is
unique, else the row index.

The readers: :mod:`hasrd.io.corpora_lhotse` (Lhotse) and :mod:`hasrd.io.corpora_hf` (Hugging Face
datasets); their public names are importable from here.
"""
from __future__ import annotations

import re

from .corpora_common import INSTALL_HINT
from .corpora_hf import (
    DATASET_OPTIONS,
    DATASET_PREFIX,
    ID_COLUMNS,
    SPEAKER_COLUMNS,
    TEXT_COLUMNS,
    DatasetRow,
    DatasetSpec,
    RowAudio,
    datasets_cache_dir,
    is_dataset_spec,
    not_found_message,
    open_dataset,
    parse_dataset_spec,
    read_dataset,
)
from .corpora_lhotse import lhotse_kind, read_lhotse

__all__ = [
    "INSTALL_HINT", "safe_name",
    # Lhotse (hasrd.io.corpora_lhotse)
    "lhotse_kind", "read_lhotse",
    # Hugging Face datasets (hasrd.io.corpora_hf)
    "DATASET_PREFIX", "DATASET_OPTIONS", "TEXT_COLUMNS", "ID_COLUMNS", "SPEAKER_COLUMNS", "DatasetSpec",
    "DatasetRow", "RowAudio", "is_dataset_spec", "parse_dataset_spec", "datasets_cache_dir", "not_found_message",
    "open_dataset", "read_dataset",
]


def safe_name(text: str) -> str:
    """An id as a file name: characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(text))
    return "_" + name[1:] if name.startswith(".") else (name or "_")
