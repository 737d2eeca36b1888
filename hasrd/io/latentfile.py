"""The ``.hsrl`` latent file: the continuous latent of one audio file, for continuous codecs.

A ``.hsrl`` file is a plain safetensors file (readable by ``safetensors.numpy.load_file``)::

    offset  size  field
    0       8     N = header length (uint64, little-endian)
    8       N     JSON header: {"latent": {"dtype": "F16", "shape": [D, F], "data_offsets": [0, 2DF]},
                                "__metadata__": {string: string, ...}}
    8+N     2DF   the latent [D, F] as float16, little-endian, row-major (channel by channel)

The metadata carries the same facts as a ``.hsrd`` token header (all values strings):
``format`` (``hasrd-latent``), ``format_version``, ``codec``, ``fingerprint``, ``version``,
``sample_rate``, ``hop_length``, ``frame_rate``, ``latent_dim``, ``num_frames``, ``length``,
``orig_sample_rate``, ``channels``, optionally ``chunk_frames``, and ``crc32`` of the data bytes
(safetensors itself has no checksum).

The reader checks the header length, the JSON, every field, the shape and the exact file size
before it reads the data, and the checksum and finiteness after; every fault is a
:class:`LatentFileError` (a ``ValueError``) with a one-line message. Nothing is unpickled.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from hasrd.version import __version__

from .atomic import atomic_write_bytes
from .header import (
    MAX_CHANNELS,
    MAX_FRAMES,
    MAX_LENGTH,
    MAX_SAMPLE_RATE,
    codec_meta,
    frames_cover,
    reject_constant,
    short_string,
    show,
)

SUFFIX = ".hsrl"
FORMAT = "hasrd-latent"
FORMAT_VERSION = 1
TENSOR = "latent"

MAX_HEADER_BYTES = 1 << 16
MAX_LATENT_DIM = 65536
_LEN = struct.Struct("<Q")

_INT_FIELDS = {  # name: (low, high)
    "sample_rate": (1, MAX_SAMPLE_RATE),
    "hop_length": (1, MAX_SAMPLE_RATE),
    "latent_dim": (1, MAX_LATENT_DIM),
    "num_frames": (0, MAX_FRAMES),
    "length": (0, MAX_LENGTH),
    "orig_sample_rate": (1, MAX_SAMPLE_RATE),
    "channels": (1, MAX_CHANNELS),
}
_REQUIRED = ("format", "format_version", "codec", "fingerprint", "version", *_INT_FIELDS, "frame_rate", "crc32")


class LatentFileError(ValueError):
    """A latent file (or the latent/metadata given to the writer) is malformed."""


def _parse_int(raw: dict, name: str, lo: int, hi: int) -> int:
    v = raw.get(name)
    if not isinstance(v, str) or not v.isascii() or not v.isdigit() or len(v) > 20 or not lo <= int(v) <= hi:
        raise LatentFileError(f"metadata field {name!r} must be an integer in {lo}..{hi}, got {show(v)}")
    return int(v)


def _parse_str(raw: dict, name: str) -> str:
    v = raw.get(name)
    if not short_string(v):
        raise LatentFileError(f"metadata field {name!r} must be a short printable string, got {show(v)}")
    return v


def _validate_metadata(raw: Any) -> dict:
    """The checked metadata dict (typed values) of a parsed safetensors ``__metadata__``."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise LatentFileError("not a hasrd latent file (no hasrd-latent metadata)")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise LatentFileError(f"metadata lacks {', '.join(missing)}")
    version = _parse_int(raw, "format_version", 1, 1 << 16)
    if version != FORMAT_VERSION:
        raise LatentFileError(f"latent format version {version} is newer than this hasrd ({__version__}) reads "
                              f"(version {FORMAT_VERSION}); upgrade hasrd")
    meta: dict[str, Any] = {"codec": _parse_str(raw, "codec"), "fingerprint": _parse_str(raw, "fingerprint"),
                            "version": _parse_str(raw, "version")}
    for name, (lo, hi) in _INT_FIELDS.items():
        meta[name] = _parse_int(raw, name, lo, hi)
    try:
        fr = float(raw["frame_rate"])
    except (TypeError, ValueError):
        fr = math.nan
    if not math.isfinite(fr) or not 0 < fr <= meta["sample_rate"]:
        raise LatentFileError(f"metadata field 'frame_rate' must be a number in (0, sample_rate], got {show(raw['frame_rate'])}")
    meta["frame_rate"] = fr
    if "chunk_frames" in raw:
        meta["chunk_frames"] = _parse_int(raw, "chunk_frames", 1, MAX_FRAMES)
    meta["crc32"] = _parse_int(raw, "crc32", 0, 0xFFFFFFFF)
    # as for token files: the frames cover the original audio, give or take chunked resampling
    nf, n, osr = meta["num_frames"], meta["length"], meta["orig_sample_rate"]
    if not frames_cover(nf, n, fr, osr):
        raise LatentFileError(f"metadata is inconsistent: {nf} frames at {fr:g} Hz do not match {n} samples at {osr} Hz")
    meta["duration"] = n / osr
    meta["format_version"] = FORMAT_VERSION
    meta["dtype"] = "float16"
    return meta


def _parse_header(raw: bytes) -> tuple[dict, int]:
    """``(meta, data_bytes)`` from the JSON header of a safetensors file."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise LatentFileError("not a hasrd latent file (header is not JSON)") from None
    if not isinstance(obj, dict):
        raise LatentFileError("not a hasrd latent file (header is not a JSON object)")
    meta = _validate_metadata(obj.get("__metadata__"))
    tensors = {k: v for k, v in obj.items() if k != "__metadata__"}
    if set(tensors) != {TENSOR}:
        raise LatentFileError(f"a latent file holds exactly one tensor {TENSOR!r}, this one {sorted(tensors)[:4]}")
    info = tensors[TENSOR]
    if not isinstance(info, dict) or info.get("dtype") != "F16":
        raise LatentFileError(f"tensor {TENSOR!r} must be float16 (F16), got {show(info.get('dtype') if isinstance(info, dict) else info)}")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    want = [meta["latent_dim"], meta["num_frames"]]
    if shape != want:
        raise LatentFileError(f"tensor shape {show(shape)} does not match the metadata ([latent_dim, num_frames] = {want})")
    nbytes = 2 * meta["latent_dim"] * meta["num_frames"]
    if offsets != [0, nbytes]:
        raise LatentFileError(f"tensor data_offsets {show(offsets)} do not match its shape (expected [0, {nbytes}])")
    return meta, nbytes


def _read_prefix(prefix: bytes, size: int) -> int:
    if len(prefix) < _LEN.size:
        raise LatentFileError("not a hasrd latent file (too short)")
    (n,) = _LEN.unpack(prefix[:_LEN.size])
    if not 2 <= n <= MAX_HEADER_BYTES:
        raise LatentFileError("not a hasrd latent file (bad header length)")
    if _LEN.size + n > size:
        raise LatentFileError(f"truncated or corrupted: a header of {n} bytes needs a file of at least "
                              f"{_LEN.size + n} bytes, the file has {size}")
    return n


def _check_size(size: int, header_end: int, nbytes: int) -> None:
    expected = header_end + nbytes
    if size != expected:
        what = "truncated or corrupted" if size < expected else "corrupted (trailing bytes)"
        raise LatentFileError(f"{what}: the header declares {expected} bytes, the file has {size}")


def _data(payload: bytes | memoryview, meta: dict) -> np.ndarray:
    if zlib.crc32(payload) != meta["crc32"]:
        raise LatentFileError("corrupted: checksum mismatch")
    latent = np.frombuffer(payload, dtype="<f2").reshape(meta["latent_dim"], meta["num_frames"]).astype(np.float16)
    if not np.isfinite(latent).all():
        raise LatentFileError("the latent holds NaN or infinite values")
    return latent


# ---------------------------------------------------------------------------------------------
# public API


def latent_meta(codec: Any, length: int, orig_sample_rate: int, channels: int = 1, **extra: Any) -> dict:
    """The ``meta`` of a latent of the continuous ``codec`` made from ``length`` samples at
    ``orig_sample_rate``; keyword arguments (``chunk_frames``) are passed through."""
    return codec_meta(codec, {"latent_dim": int(codec.latent_dim)}, length, orig_sample_rate, channels, **extra)


def latent_to_bytes(latent: Any, meta: dict) -> bytes:
    """Serialise a ``[latent_dim, frames]`` float latent (stored as float16) and ``meta``.

    ``meta`` needs ``codec, fingerprint, sample_rate, hop_length, frame_rate, length,
    orig_sample_rate, channels`` and may give ``chunk_frames`` (see :func:`latent_meta`);
    ``latent_dim`` and ``num_frames`` come from the latent, ``version`` is this hasrd's.
    """
    from safetensors.numpy import save

    if hasattr(latent, "detach"):  # a torch tensor
        latent = latent.detach().cpu().float().numpy()
    arr = np.asarray(latent)
    if arr.ndim != 2:
        raise LatentFileError(f"a latent must be [latent_dim, frames], got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise LatentFileError(f"a latent must be floating point, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise LatentFileError("the latent holds NaN or infinite values")
    with np.errstate(over="ignore"):
        arr16 = np.ascontiguousarray(arr.astype("<f2"))
    if not np.isfinite(arr16).all():
        raise LatentFileError("the latent exceeds the float16 range (|value| > 65504)")
    if not isinstance(meta, dict):
        raise LatentFileError(f"meta must be a dict, got {type(meta).__name__}")
    for key, value in (("latent_dim", arr.shape[0]), ("num_frames", arr.shape[1])):
        if meta.get(key) is not None and meta[key] != value:
            raise LatentFileError(f"meta {key}={meta[key]!r} does not match the latent ({value})")
    need = ("codec", "fingerprint", "sample_rate", "hop_length", "frame_rate", "length", "orig_sample_rate", "channels")
    missing = [k for k in need if meta.get(k) is None]
    if missing:
        raise LatentFileError(f"meta lacks {', '.join(missing)}")
    try:
        fr = float(meta["frame_rate"])
        ints = {k: int(meta[k]) for k in ("sample_rate", "hop_length", "length", "orig_sample_rate", "channels")}
        if meta.get("chunk_frames") is not None:
            ints["chunk_frames"] = int(meta["chunk_frames"])
    except (TypeError, ValueError) as exc:
        raise LatentFileError(f"meta has a non-numeric field: {exc}") from None
    payload = arr16.tobytes()
    raw = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "codec": str(meta["codec"]),
           "fingerprint": str(meta["fingerprint"]), "version": __version__,
           "frame_rate": repr(fr), "latent_dim": str(arr.shape[0]), "num_frames": str(arr.shape[1]),
           "crc32": str(zlib.crc32(payload)), **{k: str(v) for k, v in ints.items()}}
    data = save({TENSOR: arr16}, metadata=raw)
    latent_from_bytes(data)  # the writer applies the reader's checks: it cannot write a file the reader refuses
    return data


def latent_from_bytes(data: bytes | bytearray | memoryview) -> tuple[np.ndarray, dict]:
    """Parse ``.hsrl`` bytes into ``(latent float16 [latent_dim, frames], meta)``; faults -> LatentFileError."""
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        raise LatentFileError(f"expected bytes, got {type(data).__name__}") from None
    size = len(view)
    n = _read_prefix(bytes(view[:_LEN.size]), size)
    header_end = _LEN.size + n
    meta, nbytes = _parse_header(bytes(view[_LEN.size:header_end]))
    _check_size(size, header_end, nbytes)
    return _data(view[header_end:], meta), meta


def read_latent_header(path: str | os.PathLike) -> dict:
    """The checked metadata of a latent file (size checked; data, checksum not read)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        n = _read_prefix(fh.read(_LEN.size), size)
        meta, nbytes = _parse_header(fh.read(n))
        _check_size(size, _LEN.size + n, nbytes)
        meta["header_bytes"] = n
    return meta


def load_latent(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read a ``.hsrl`` file: ``(latent float16 [latent_dim, frames], meta)``.

    Raises:
        LatentFileError: the file is not a valid latent file.
        OSError: the file cannot be opened.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        n = _read_prefix(fh.read(_LEN.size), size)
        meta, nbytes = _parse_header(fh.read(n))  # every declared size checked before the data is read
        _check_size(size, _LEN.size + n, nbytes)
        payload = fh.read(nbytes)
        if len(payload) != nbytes:
            raise LatentFileError(f"truncated: file shrank while being read ({len(payload)} of {nbytes} data bytes)")
    return _data(payload, meta), meta


def save_latent(path: str | os.PathLike, latent: Any, meta: dict, overwrite: bool = True) -> int:
    """Write a ``.hsrl`` file atomically (temp file + ``os.replace``); returns the bytes written.
    ``overwrite=False``: ``FileExistsError`` if ``path`` exists by the time the file is complete."""
    data = latent_to_bytes(latent, meta)
    atomic_write_bytes(Path(path), data, overwrite)
    return len(data)


def file_kind(path: str | os.PathLike) -> str:
    """``"latent"`` or ``"tokens"``: by content first (a token file's ``HSRD`` magic; a safetensors
    header naming the ``hasrd-latent`` format), else by the suffix (``.hsrl`` = latent). The loader
    of that kind still checks everything, so a damaged file gets that loader's error."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_LEN.size)
            if head[:4] == b"HSRD":
                return "tokens"
            if len(head) == _LEN.size and 2 <= _LEN.unpack(head)[0] <= MAX_HEADER_BYTES:
                header = fh.read(_LEN.unpack(head)[0])
                if header[:1] == b"{" and f'"{FORMAT}"'.encode() in header:
                    return "latent"
    except OSError:
        pass
    return "latent" if path.suffix.lower() == SUFFIX else "tokens"
