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
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..hub import hub_cache_dir, hub_offline, is_hub_id
from .audio import AudioError, audio_info, load_audio
from .entry import Entry, ManifestError, bytes_info, decode_bytes

DATASET_PREFIX = "hf-dataset:"
INSTALL_HINT = 'pip install "hasrd[corpora]"'
DATASET_OPTIONS = ("streaming", "config", "audio", "text", "id", "speaker")
TEXT_COLUMNS = ("text", "transcription", "sentence", "normalized_text", "transcript")
ID_COLUMNS = ("id", "utt_id", "key", "segment_id")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
_CUT_TYPES = ("MonoCut", "MultiCut", "DataCut", "MixedCut", "PaddingCut")


# ------------------------------------------------------------------------------------------------
# Lhotse


def lhotse_kind(path: str | os.PathLike) -> str | None:
    """``cuts``, ``recordings``, ``supervisions``, ``features`` or ``unknown`` for a Lhotse
    manifest (the rule in the module docstring), None for anything else."""
    path = Path(path)
    name = path.name.lower()
    gz = name.endswith(".jsonl.gz")
    if not (gz or name.endswith((".jsonl", ".json"))) or not path.is_file():
        return None
    first = _first_object(path, gz)
    if not isinstance(first, dict) or "path" in first:
        return "unknown" if gz else None
    if "sources" in first and "sampling_rate" in first:
        return "recordings"
    if first.get("type") in _CUT_TYPES or (
            ("recording" in first or "recording_id" in first) and "start" in first and "duration" in first
            and ("supervisions" in first or "recording" in first)):
        return "cuts"
    if "recording_id" in first and "start" in first and "duration" in first:
        return "supervisions"
    if "storage_type" in first and "num_frames" in first:
        return "features"
    return "unknown" if gz else None


def _first_object(path: Path, gz: bool):
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")) as fh:
            for line in fh:
                if line.strip():
                    return json.loads(line)
    except (OSError, ValueError, EOFError):
        return None
    return None


def _import_lhotse(source):
    try:
        import lhotse
        from lhotse.serialization import load_manifest_lazy_or_eager
    except ImportError:
        raise ManifestError(f"{source}: reading Lhotse manifests needs the lhotse package: {INSTALL_HINT}") from None
    return lhotse, load_manifest_lazy_or_eager


def read_lhotse(path: str | os.PathLike) -> list[Entry]:
    """The entries of a Lhotse CutSet or RecordingSet (see the module docstring)."""
    path = Path(path)
    kind = lhotse_kind(path)
    if kind == "supervisions":
        raise ManifestError(f"{path}: a Lhotse SupervisionSet holds no audio; give the recordings manifest beside it, "
                            "or cuts (lhotse cut simple -r RECORDINGS -s SUPERVISIONS CUTS)")
    if kind not in ("cuts", "recordings"):
        raise ManifestError(f"{path}: not a Lhotse CutSet or RecordingSet manifest (its first line is "
                            + ("a feature manifest's" if kind == "features" else "not a Lhotse cut or recording") + ")")
    _, load = _import_lhotse(path)
    try:
        manifest = load(path)
    except Exception as exc:  # noqa: BLE001 - lhotse's own parse errors vary
        raise ManifestError(f"{path}: lhotse cannot read it ({type(exc).__name__}: {_first_line(exc)})") from None
    base = path.parent
    entries: list[Entry] = []
    if manifest is not None:
        if kind == "recordings":
            sups = _sibling_supervisions(path, load)
            for rec in manifest:
                entries.append(_recording_entry(rec, sups.get(rec.id, []), path, base))
        else:
            for cut in manifest:
                entries.append(_cut_entry(cut, path, base))
    _check_present(path, entries)
    return entries


def _sibling_supervisions(path: Path, load) -> dict[str, list]:
    if "recordings" not in path.name:
        return {}
    sibling = path.with_name(path.name.replace("recordings", "supervisions"))
    if not sibling.is_file():
        return {}
    out: dict[str, list] = {}
    for sup in load(sibling) or []:
        out.setdefault(sup.recording_id, []).append(sup)
    return out


def _texts(sups) -> tuple[str | None, dict]:
    sups = sorted(sups, key=lambda s: s.start)
    text = " ".join(s.text.strip() for s in sups if getattr(s, "text", None)) or None
    speaker = next((s.speaker for s in sups if getattr(s, "speaker", None)), None)
    return text, ({"speaker": speaker} if speaker else {})


def _source_path(rec, channel, manifest: Path, base: Path) -> Path:
    names = [t.get("name") if isinstance(t, dict) else type(t).__name__ for t in (rec.transforms or [])]
    other = [str(n) for n in names if n != "Resample"]
    if other:
        raise ManifestError(f"{manifest}: recording {rec.id} has Lhotse transforms ({', '.join(other)}); hasrd reads "
                            "the source file as stored: use a manifest without them (speed perturbation: train.speed_perturb)")
    want = channel[0] if isinstance(channel, (list, tuple)) and channel else channel
    want = 0 if want is None else want
    src = next((s for s in rec.sources if want in (s.channels or [])), rec.sources[0])
    if src.type != "file":
        raise ManifestError(f"{manifest}: recording {rec.id}'s audio is a Lhotse {src.type!r} source; "
                            "hasrd reads 'file' sources only")
    p = Path(str(src.source))
    if not p.is_absolute() and not p.exists() and (base / p).exists():
        p = base / p  # lhotse reads relative sources from the current folder; the manifest's folder as a fallback
    return p


def _recording_entry(rec, sups, manifest: Path, base: Path) -> Entry:
    text, extra = _texts(sups)
    return Entry(_source_path(rec, None, manifest, base), text, extra, id=rec.id)


def _cut_entry(cut, manifest: Path, base: Path) -> Entry:
    kind = type(cut).__name__
    if kind in ("MixedCut", "PaddingCut"):
        raise ManifestError(f"{manifest}: cut {cut.id} is a {kind} (mixed or padded audio); hasrd reads cuts of "
                            "one recording only (MonoCut, MultiCut)")
    if not getattr(cut, "has_recording", False):
        raise ManifestError(f"{manifest}: cut {cut.id} has no recording (a features-only cut); hasrd needs the audio")
    rec = cut.recording
    path = _source_path(rec, cut.channel, manifest, base)
    offset, duration = float(cut.start), float(cut.duration)
    whole = offset <= 0 and abs(duration - float(rec.duration)) <= 1.0 / float(rec.sampling_rate)
    text, extra = _texts(cut.supervisions)
    return Entry(path, text, extra, span=None if whole else (offset, duration), id=cut.id)


def _check_present(manifest: Path, entries: list[Entry]) -> None:
    seen: set[Path] = set()
    missing: list[Path] = []
    for e in entries:
        if e.path not in seen:
            seen.add(e.path)
            if not e.path.is_file():
                missing.append(e.path)
    if missing:
        raise ManifestError(f"{manifest}: {len(missing)} of the {len(seen)} audio files of this Lhotse manifest "
                            f"are missing (first: {missing[0]})")


# ------------------------------------------------------------------------------------------------
# Hugging Face datasets


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
                raise ManifestError(f"{spec.text}: not a readable save_to_disk folder ({_first_line(exc)})") from None
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
                raise ManifestError(f"{spec.text}: datasets cannot load it ({type(exc).__name__}: {_first_line(exc)})") from None
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
            raise ManifestError(not_found_message(spec, f"{type(exc).__name__}: {_first_line(exc)}")) from None


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
    """The entries of ``hf-dataset:...`` (see the module docstring): a list, or with
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


def safe_name(text: str) -> str:
    """An id as a file name: characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(text))
    return "_" + name[1:] if name.startswith(".") else (name or "_")
