"""Hugging Face datasets as corpora: ``hf-dataset:NAME_OR_PATH[:SPLIT][?OPTIONS]`` specs,
:func:`open_dataset`, :func:`read_dataset` and the rows' audio references (:class:`DatasetRow`,
:class:`RowAudio`).

The rules (what a spec names, where a dataset is looked for, the options, what an entry of a row
is) are in :mod:`hasrd.io.corpora`'s docstring. ``datasets`` is imported only when such a corpus
is read.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..hub import hub_cache_dir, hub_offline, is_hub_id
from .audio import AudioError, audio_info, load_audio
from .corpora_common import INSTALL_HINT, first_line
from .entry import Entry, ManifestError, bytes_info, decode_bytes

DATASET_PREFIX = "hf-dataset:"
DATASET_OPTIONS = ("streaming", "config", "audio", "text", "id", "speaker")
TEXT_COLUMNS = ("text", "transcription", "sentence", "normalized_text", "transcript")
ID_COLUMNS = ("id", "utt_id", "key", "segment_id")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")


def is_dataset_spec(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).startswith(DATASET_PREFIX)


@dataclass
class DatasetSpec:
    text: str  # as given
    name: str
    split: str | None
    options: dict

    @property
    def streaming(self) -> bool:
        return str(self.options.get("streaming", "0")).lower() in ("1", "true", "yes", "on")

    @property
    def display(self) -> str:
        """The spec without options: what entries' ``path`` holds."""
        return DATASET_PREFIX + self.name + (f":{self.split}" if self.split else "")


_SPEC = re.compile(r"(?P<name>[^:?]+)(?::(?P<split>[^?]+))?(?:\?(?P<query>.*))?")


def parse_dataset_spec(text: str) -> DatasetSpec:
    """``hf-dataset:NAME_OR_PATH[:SPLIT][?key=value&...]`` (NAME_OR_PATH without ``:``)."""
    body = text[len(DATASET_PREFIX):]
    m = _SPEC.fullmatch(body)
    if not m:
        raise ManifestError(f"{text}: expected hf-dataset:NAME_OR_PATH[:SPLIT][?streaming=1&config=NAME&audio=COLUMN...]")
    options = {}
    for item in filter(None, (m.group("query") or "").split("&")):
        key, _, value = item.partition("=")
        if key not in DATASET_OPTIONS:
            raise ManifestError(f"{text}: unknown option {key!r}; use {', '.join(DATASET_OPTIONS)}")
        options[key] = value
    return DatasetSpec(text, m.group("name"), m.group("split"), options)


def _import_datasets(source: str):
    try:
        import datasets
    except ImportError:
        raise ManifestError(f"{source}: reading Hugging Face datasets needs the datasets package: {INSTALL_HINT}") from None
    return datasets


def datasets_cache_dir() -> Path:
    """The datasets cache as ``datasets`` would choose it from the environment *now*."""
    env = os.environ
    if env.get("HF_DATASETS_CACHE"):
        return Path(os.path.expandvars(env["HF_DATASETS_CACHE"])).expanduser()
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(env["HF_HOME"])).expanduser() / "datasets"
    xdg = env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "datasets"


@contextlib.contextmanager
def _offline_if_asked(datasets):
    """``datasets`` reads ``HF_HUB_OFFLINE`` once, at import; obey the variable as it is now."""
    old = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = bool(old or hub_offline())
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = old


def _pick_split(dd, spec: DatasetSpec):
    splits = list(dd.keys())
    if spec.split is None:
        if len(splits) == 1:
            return dd[splits[0]], splits[0]
        raise ManifestError(f"{spec.text}: the dataset has splits {', '.join(splits)}; name one "
                            f"({spec.display}:{splits[0]})")
    if spec.split not in dd:
        raise ManifestError(f"{spec.text}: no split {spec.split!r}; the dataset has {', '.join(splits)}")
    return dd[spec.split], spec.split


def not_found_message(spec: DatasetSpec, cause: str | None = None) -> str:
    where = (f"the local hub cache {hub_cache_dir()} nor in the datasets cache {datasets_cache_dir()}"
             + (" (HF_HUB_OFFLINE is set)" if hub_offline() else ""))
    why = f" ({cause})" if cause else ""
    return (f"{spec.text}: no such local dataset folder, and dataset {spec.name} is neither in {where}{why}; "
            f"download it when online with `hf download {spec.name} --repo-type dataset`, "
            "or pass a save_to_disk folder")


def open_dataset(spec: DatasetSpec):
    """``(dataset, split)``: the ``datasets.Dataset`` (``IterableDataset`` when streamed) a spec
    names, and the name of its split (None for a ``save_to_disk`` Dataset, which has none)."""
    datasets = _import_datasets(spec.text)
    local = Path(spec.name).expanduser()
    kwargs = {"name": spec.options.get("config") or None, "streaming": spec.streaming,
              "cache_dir": str(datasets_cache_dir())}

    def load(path: str):
        ds = datasets.load_dataset(path, split=spec.split, **kwargs) if spec.split else datasets.load_dataset(path, **kwargs)
        return _pick_split(ds, spec) if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)) else (ds, spec.split)

    with _offline_if_asked(datasets):
        if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
            try:
                ds = datasets.load_from_disk(str(local))
            except Exception as exc:  # noqa: BLE001
                raise ManifestError(f"{spec.text}: not a readable save_to_disk folder ({first_line(exc)})") from None
            split = None
            if isinstance(ds, datasets.DatasetDict):
                ds, split = _pick_split(ds, spec)
            elif spec.split and ds.split is not None and str(ds.split) != spec.split:
                raise ManifestError(f"{spec.text}: the folder holds the {ds.split} split, not {spec.split!r}")
            return (ds.to_iterable_dataset() if spec.streaming else ds), split
        if local.exists():
            try:
                return load(str(local))
            except ManifestError:
                raise
            except Exception as exc:  # noqa: BLE001 - wrong config, no data files, ...
                raise ManifestError(f"{spec.text}: datasets cannot load it ({type(exc).__name__}: {first_line(exc)})") from None
        if not is_hub_id(spec.name):
            raise ManifestError(f"{spec.text}: no such dataset folder (and {spec.name!r} is not a hub dataset id org/name)")
        snapshot = None
        try:
            from huggingface_hub import snapshot_download

            snapshot = snapshot_download(spec.name, repo_type="dataset", cache_dir=str(hub_cache_dir()),
                                         local_files_only=True)
        except Exception:  # noqa: BLE001 - not in the hub cache: try the datasets cache (or the hub)
            snapshot = None
        try:
            return load(snapshot or spec.name)
        except ManifestError:
            raise
        except Exception as exc:  # noqa: BLE001 - not cached, offline, gated, ...
            raise ManifestError(not_found_message(spec, f"{type(exc).__name__}: {first_line(exc)}")) from None


def _columns(ds) -> list[str]:
    names = getattr(ds, "column_names", None)
    if names:
        return list(names)
    return list(ds.features) if getattr(ds, "features", None) else []


def _pick_column(spec: DatasetSpec, key: str, columns: list[str], defaults: tuple[str, ...]) -> str | None:
    if spec.options.get(key):
        col = spec.options[key]
        if col not in columns:
            raise ManifestError(f"{spec.text}: no column {col!r} ({key}=); the columns are {', '.join(columns)}")
        return col
    return next((c for c in defaults if c in columns), None)


def _audio_column(spec: DatasetSpec, ds, datasets) -> tuple[str, bool]:
    """The audio column and whether it is an ``Audio`` feature (else raw values: bytes dicts, paths, arrays)."""
    columns = _columns(ds)
    features = getattr(ds, "features", None) or {}
    if spec.options.get("audio"):
        col = _pick_column(spec, "audio", columns, ())
    else:
        col = next((c for c, f in features.items() if isinstance(f, datasets.Audio)), None)
        if col is None and "audio" in columns:
            col = "audio"
    if col is None:
        raise ManifestError(f"{spec.text}: no audio column (none of type Audio, none named 'audio'); the columns are "
                            f"{', '.join(columns) or '(none)'}: name one with ?audio=COLUMN")
    return col, isinstance(features.get(col), datasets.Audio)


class _DatasetHandle:
    """The dataset's audio column, encoded (``Audio(decode=False)``), shared by its rows' references."""

    def __init__(self, label: str, view, column: str):
        self.label, self.view, self.column = label, view, column

    def value(self, index: int):
        return self.view[int(index)][self.column]


def _read_value(value, name: str) -> tuple[np.ndarray, int]:
    if isinstance(value, dict):
        if value.get("bytes"):
            return decode_bytes(value["bytes"], name)
        if value.get("array") is not None and value.get("sampling_rate"):
            audio = np.asarray(value["array"], dtype=np.float32)
            return (audio[None] if audio.ndim == 1 else audio), int(value["sampling_rate"])
        if value.get("path"):
            return load_audio(value["path"], mono=False)
    elif isinstance(value, (str, os.PathLike)):
        return load_audio(value, mono=False)
    raise AudioError(f"{name}: the row holds no audio (neither bytes, a file path nor an array)")


def _value_info(value, name: str) -> dict:
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes_info(value["bytes"], name)
        if value.get("array") is not None and value.get("sampling_rate"):
            audio, sr = _read_value(value, name)
            return {"sample_rate": sr, "channels": audio.shape[0], "frames": audio.shape[-1],
                    "duration": audio.shape[-1] / sr}
        if value.get("path"):
            return audio_info(value["path"])
    elif isinstance(value, (str, os.PathLike)):
        return audio_info(value)
    raise AudioError(f"{name}: the row holds no audio (neither bytes, a file path nor an array)")


class DatasetRow:
    """A ``(dataset, index)`` reference: the row's audio is read (and decoded) when asked for."""

    __slots__ = ("handle", "index")

    def __init__(self, handle: _DatasetHandle, index: int):
        self.handle, self.index = handle, index

    @property
    def label(self) -> str:
        return self.handle.label

    def _name(self) -> str:
        return f"{self.handle.label}#{self.index}"

    def read(self) -> tuple[np.ndarray, int]:
        return _read_value(self.handle.value(self.index), self._name())

    def info(self) -> dict:
        return _value_info(self.handle.value(self.index), self._name())


class RowAudio:
    """A streamed row's audio, held in memory as the dataset stores it (encoded bytes, usually)."""

    __slots__ = ("label", "value", "where")

    def __init__(self, label: str, value, where: str):
        self.label, self.value, self.where = label, value, where

    def read(self) -> tuple[np.ndarray, int]:
        return _read_value(self.value, self.where)

    def info(self) -> dict:
        return _value_info(self.value, self.where)


def _label(spec: DatasetSpec, split: str | None) -> str:
    """The dataset's part of an entry key: the hub id, or a local folder's name (keys survive a
    move), and the split."""
    name = spec.name if is_hub_id(spec.name) else (Path(spec.name).expanduser().resolve().name or spec.name)
    return f"{name}:{split or ''}"


def read_dataset(text: str, streaming_ok: bool = False) -> list[Entry] | Iterator[Entry]:
    """The entries of ``hf-dataset:...`` (see :mod:`hasrd.io.corpora`'s docstring): a list, or with
    ``?streaming=1`` (only when ``streaming_ok``) an iterator of entries holding their audio."""
    spec = parse_dataset_spec(text)
    if spec.streaming and not streaming_ok:
        raise ManifestError(f"{text}: a streamed dataset (streaming=1) is read once in order, as hasrd encode and "
                            "evaluate.py --data do; training and the teacher cache need random access: drop streaming=1 "
                            "(the dataset is then memory-mapped from its files, not loaded into memory)")
    datasets = _import_datasets(text)
    ds, split = open_dataset(spec)
    audio, is_audio = _audio_column(spec, ds, datasets)
    if is_audio:
        ds = ds.cast_column(audio, datasets.Audio(decode=False))
    columns = _columns(ds)
    cols = {key: _pick_column(spec, key, columns, defaults)
            for key, defaults in (("text", TEXT_COLUMNS), ("id", ID_COLUMNS), ("speaker", SPEAKER_COLUMNS))}
    path, label = Path(spec.display), _label(spec, split)
    if spec.streaming:
        return _stream_entries(ds, audio, cols, path, label)
    n = len(ds)
    values = {key: list(ds[col]) for key, col in cols.items() if col is not None}
    ids = values.get("id")
    if ids is None or len({str(i) for i in ids}) != n:
        ids = list(range(n))  # no id column, or one whose values repeat: the row index
    handle = _DatasetHandle(label, ds.select_columns([audio]), audio)
    entries = []
    for i in range(n):
        text_i = values["text"][i] if "text" in values else None
        speaker = values["speaker"][i] if "speaker" in values else None
        extra = {"speaker": str(speaker)} if speaker not in (None, "") else {}
        entries.append(Entry(path, text_i or None, extra, audio=DatasetRow(handle, i), id=str(ids[i])))
    return entries


def _stream_entries(ds, audio: str, cols: dict, path: Path, label: str) -> Iterator[Entry]:
    for i, row in enumerate(ds):
        rid = str(row[cols["id"]]) if cols["id"] is not None and row.get(cols["id"]) is not None else str(i)
        speaker = row.get(cols["speaker"]) if cols["speaker"] else None
        extra = {"speaker": str(speaker)} if speaker not in (None, "") else {}
        text = row.get(cols["text"]) if cols["text"] else None
        yield Entry(path, text or None, extra, audio=RowAudio(label, row[audio], f"{path}#{rid}"), id=rid)
