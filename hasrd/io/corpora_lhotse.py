"""Lhotse CutSets and RecordingSets as corpora: :func:`lhotse_kind` and :func:`read_lhotse`.

The rules (which files are Lhotse manifests, what an entry of a cut or a recording is, what is
refused) are in :mod:`hasrd.io.corpora`'s docstring. ``lhotse`` is imported only when such a
manifest is read.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from .corpora_common import INSTALL_HINT, first_line
from .entry import Entry, ManifestError

_CUT_TYPES = ("MonoCut", "MultiCut", "DataCut", "MixedCut", "PaddingCut")


def lhotse_kind(path: str | os.PathLike) -> str | None:
    """``cuts``, ``recordings``, ``supervisions``, ``features`` or ``unknown`` for a Lhotse
    manifest (the rule in :mod:`hasrd.io.corpora`'s docstring), None for anything else."""
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
    """The entries of a Lhotse CutSet or RecordingSet (see :mod:`hasrd.io.corpora`'s docstring)."""
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
        raise ManifestError(f"{path}: lhotse cannot read it ({type(exc).__name__}: {first_line(exc)})") from None
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
