"""The header of the ``.hsrd`` token file: its layout constants, its keys and their checks.

The magic and version byte every format version starts with (:func:`parse_magic`); the prefix
(magic, format version, header length) and the compact JSON header of format versions 1 and 2,
and how their fields are checked, both when a file is read (:func:`parse_prefix`,
:func:`parse_header`, :func:`check_size`) and when one is written (:func:`header_bytes` applies
the reader's checks). The binary header of version 3 is :mod:`hasrd.io.compactheader` (which
applies the same field checks); the payload and the files themselves are
:mod:`hasrd.io.tokenfile`; the specification is ``docs/token_files.md``.
"""
from __future__ import annotations

import json
import math
import operator
import struct
from typing import Any

from hasrd.version import __version__

from .header import (
    MAX_CHANNELS,
    MAX_CODEBOOK_SIZE,
    MAX_FRAMES,
    MAX_LENGTH,
    MAX_N_Q,
    MAX_SAMPLE_RATE,
    TokenFileError,
    frames_cover,
    reject_constant,
    short_string,
    show,
)

MAGIC = b"HSRD"
# Version 1: a JSON header (this module), bit-packed payload.
JSON_FORMAT_VERSION = 1
# Version 2: the same layout, but the payload is entropy-coded with static tables that live with
# the model (hasrd.io.entropy); the header names the coding (pc), the tables (et) and carries a
# checksum of the codes (cc).
ENTROPY_FORMAT_VERSION = 2
# Version 3: a binary header of a few bytes (hasrd.io.compactheader) that leaves the model's facts
# to the model; bit-packed or entropy-coded payload (a flag). What writers write by default.
COMPACT_FORMAT_VERSION = 3
FORMAT_VERSION = COMPACT_FORMAT_VERSION
KNOWN_FORMAT_VERSIONS = (JSON_FORMAT_VERSION, ENTROPY_FORMAT_VERSION, COMPACT_FORMAT_VERSION)
SUFFIX = ".hsrd"

MAGIC_BYTES = 5  # magic and version: the same in every format version
PREFIX_STRUCT = struct.Struct("<4sBH")  # versions 1 and 2: magic, version, header length
CRC_STRUCT = struct.Struct("<I")
PREFIX_BYTES = PREFIX_STRUCT.size  # 7
CRC_BYTES = CRC_STRUCT.size  # 4
OVERHEAD_BYTES = PREFIX_BYTES + CRC_BYTES  # versions 1 and 2: fixed bytes besides the header and the payload

# Hard caps on what a header may declare (a file above them is refused, not allocated); the
# ones latent files share are in hasrd.io.header.
MAX_HEADER_BYTES = 65535

# Python name -> short key written in the header.
HEADER_KEYS = {
    "codec": "c",
    "fingerprint": "fp",
    "sample_rate": "sr",
    "hop_length": "hop",
    "frame_rate": "fr",
    "n_q": "nq",
    "codebook_sizes": "k",
    "num_frames": "nf",
    "length": "n",
    "orig_sample_rate": "osr",
    "channels": "ch",
    "version": "v",
    "chunk_frames": "ck",
    "extra": "x",
    # format version 2 only
    "payload_coding": "pc",
    "entropy_table": "et",
    "codes_crc": "cc",
}
_REQUIRED = ("codec", "fingerprint", "sample_rate", "frame_rate", "codebook_sizes", "length",
             "orig_sample_rate", "channels")


# ---------------------------------------------------------------------------------------------
# helpers


def bits_for(codebook_size: int) -> int:
    """Bits per code of a codebook of ``codebook_size`` entries: ``ceil(log2 K)``."""
    return (int(codebook_size) - 1).bit_length()


def payload_bytes(num_frames: int, codebook_sizes: list[int]) -> int:
    """Size in bytes of the packed codes of ``num_frames`` frames."""
    return (num_frames * sum(bits_for(k) for k in codebook_sizes) + 7) // 8


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def int_field(obj: dict, key: str, lo: int, hi: int, name: str) -> int:
    v = obj.get(key)
    if not is_int(v) or not lo <= v <= hi:
        raise TokenFileError(f"header field {name!r} must be an integer in {lo}..{hi}, got {show(v)}")
    return v


def str_field(obj: dict, key: str, name: str) -> str:
    v = obj.get(key)
    if not short_string(v):
        raise TokenFileError(f"header field {name!r} must be a short printable string, got {show(v)}")
    return v


def validate_header(obj: Any, version: int = JSON_FORMAT_VERSION) -> dict:
    """Check a decoded header object and return the metadata dict (long names)."""
    if not isinstance(obj, dict):
        raise TokenFileError("header is not a JSON object")
    missing = [f"{k} ({HEADER_KEYS[k]!r})" for k in _REQUIRED + ("n_q", "num_frames", "version") if HEADER_KEYS[k] not in obj]
    if missing:
        raise TokenFileError(f"header lacks {', '.join(missing)}")
    meta: dict[str, Any] = {}
    meta["codec"] = str_field(obj, "c", "codec")
    meta["fingerprint"] = str_field(obj, "fp", "fingerprint")
    meta["version"] = str_field(obj, "v", "version")
    meta["sample_rate"] = sr = int_field(obj, "sr", 1, MAX_SAMPLE_RATE, "sample_rate")
    fr = obj.get("fr")
    if not isinstance(fr, (int, float)) or isinstance(fr, bool) or not math.isfinite(fr) or not 0 < fr <= sr:
        raise TokenFileError(f"header field 'frame_rate' must be a number in (0, sample_rate], got {show(fr)}")
    meta["frame_rate"] = float(fr)
    meta["hop_length"] = int_field(obj, "hop", 1, MAX_SAMPLE_RATE, "hop_length") if "hop" in obj else None
    meta["n_q"] = n_q = int_field(obj, "nq", 1, MAX_N_Q, "n_q")
    k = obj.get("k")
    sizes = [k] * n_q if is_int(k) else k
    if not isinstance(sizes, list) or len(sizes) != n_q or not all(
        is_int(s) and 2 <= s <= MAX_CODEBOOK_SIZE for s in sizes
    ):
        raise TokenFileError(
            f"header field 'codebook_sizes' must be an integer or a list of {n_q} integers in 2..{MAX_CODEBOOK_SIZE}"
        )
    meta["codebook_sizes"] = list(sizes)
    meta["num_frames"] = nf = int_field(obj, "nf", 0, MAX_FRAMES, "num_frames")
    meta["length"] = n = int_field(obj, "n", 0, MAX_LENGTH, "length")
    meta["orig_sample_rate"] = osr = int_field(obj, "osr", 1, MAX_SAMPLE_RATE, "orig_sample_rate")
    meta["channels"] = int_field(obj, "ch", 1, MAX_CHANNELS, "channels")
    if "ck" in obj:
        meta["chunk_frames"] = int_field(obj, "ck", 1, MAX_FRAMES, "chunk_frames")
    if "x" in obj:
        if not isinstance(obj["x"], dict):
            raise TokenFileError("header field 'extra' must be a JSON object")
        meta["extra"] = obj["x"]
    if not frames_cover(nf, n, meta["frame_rate"], osr):
        raise TokenFileError(
            f"header is inconsistent: {nf} frames at {meta['frame_rate']:g} Hz do not match "
            f"{n} samples at {osr} Hz"
        )
    meta["duration"] = n / osr
    meta["format_version"] = version
    if version == ENTROPY_FORMAT_VERSION:
        meta["payload_coding"] = str_field(obj, "pc", "payload_coding")
        digest = str_field(obj, "et", "entropy_table")
        if len(digest) != 16 or any(ch not in "0123456789abcdef" for ch in digest):
            raise TokenFileError(f"header field 'entropy_table' must be 16 hex digits, got {show(digest)}")
        meta["entropy_table"] = digest
        meta["codes_crc"] = int_field(obj, "cc", 0, 0xFFFFFFFF, "codes_crc")
    return meta


def _to_int(value: Any, name: str) -> int:
    """An exact integer from ``value`` (Python or numpy integers; not floats or bools)."""
    if isinstance(value, bool):
        raise TokenFileError(f"meta {name} must be an integer, got {show(value)}")
    try:
        return operator.index(value)
    except TypeError:
        raise TokenFileError(f"meta {name} must be an integer, got {show(value)}") from None


def header_bytes(meta: dict, n_q: int, frames: int, coding: dict | None = None) -> tuple[bytes, dict]:
    """The header of a file being written, and its metadata as the reader will see it.

    ``coding``: the ``pc``, ``et``, ``cc`` of an entropy-coded payload (format version 2).
    """
    if not isinstance(meta, dict):
        raise TokenFileError(f"meta must be a dict, got {type(meta).__name__}")
    missing = [k for k in _REQUIRED if meta.get(k) is None]
    if missing:
        raise TokenFileError(f"meta lacks {', '.join(missing)}")
    for key, value in (("n_q", n_q), ("num_frames", frames)):
        if meta.get(key) is not None and meta[key] != value:
            raise TokenFileError(f"meta {key}={meta[key]!r} does not match the codes ({value})")
    sizes = meta["codebook_sizes"]
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TokenFileError("meta codebook_sizes must be a list of integers")
    sizes = [_to_int(s, "codebook_sizes") for s in sizes]
    if len(sizes) < n_q:
        raise TokenFileError(f"meta gives {len(sizes)} codebook sizes for {n_q} codebooks")
    sizes = sizes[:n_q]
    try:
        fr = float(meta["frame_rate"])
    except (TypeError, ValueError):
        raise TokenFileError(f"meta frame_rate must be a number, got {show(meta['frame_rate'])}") from None
    if not math.isfinite(fr) or fr <= 0:
        raise TokenFileError(f"meta frame_rate must be a positive finite number, got {fr!r}")
    obj: dict[str, Any] = {"c": meta["codec"], "fp": meta["fingerprint"], "sr": _to_int(meta["sample_rate"], "sample_rate")}
    if meta.get("hop_length") is not None:
        obj["hop"] = _to_int(meta["hop_length"], "hop_length")
    obj.update({
        "fr": int(fr) if fr.is_integer() else fr,
        "nq": n_q,
        "k": sizes[0] if len(set(sizes)) == 1 else sizes,
        "nf": frames,
        "n": _to_int(meta["length"], "length"),
        "osr": _to_int(meta["orig_sample_rate"], "orig_sample_rate"),
        "ch": _to_int(meta["channels"], "channels"),
        "v": __version__,
    })
    if meta.get("chunk_frames") is not None:
        obj["ck"] = _to_int(meta["chunk_frames"], "chunk_frames")
    if meta.get("extra"):
        obj["x"] = meta["extra"]
    if coding:
        obj.update(coding)  # pc, et, cc of an entropy-coded payload (format version 2)
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TokenFileError(f"meta is not JSON-serialisable: {exc}") from None
    header = text.encode("utf-8")
    if len(header) > MAX_HEADER_BYTES:
        raise TokenFileError(f"header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    # the writer applies the reader's checks, so it cannot produce a file the reader refuses
    return header, validate_header(json.loads(text), ENTROPY_FORMAT_VERSION if coding else JSON_FORMAT_VERSION)


# ---------------------------------------------------------------------------------------------
# reading


def parse_magic(head: bytes | memoryview) -> int:
    """Check the magic and the version byte (the first 5 bytes of every version); return the version."""
    if len(head) < MAGIC_BYTES:
        raise TokenFileError("not a hasrd token file (too short)")
    if bytes(head[:4]) != MAGIC:
        raise TokenFileError("not a hasrd token file (bad magic bytes)")
    version = head[4]
    if version not in KNOWN_FORMAT_VERSIONS:
        if version > max(KNOWN_FORMAT_VERSIONS):
            raise TokenFileError(
                f"token format version {version} is newer than this hasrd ({__version__}) reads "
                f"(versions {', '.join(map(str, KNOWN_FORMAT_VERSIONS))}); upgrade hasrd"
            )
        raise TokenFileError(f"unknown token format version {version}")
    return version


def parse_prefix(prefix: bytes) -> int:
    """Check magic and version of a version 1 or 2 file; return the header length."""
    parse_magic(prefix)
    if len(prefix) < PREFIX_BYTES:
        raise TokenFileError("not a hasrd token file (too short)")
    return PREFIX_STRUCT.unpack(prefix[:PREFIX_BYTES])[2]


def parse_header(raw: bytes, version: int = JSON_FORMAT_VERSION) -> dict:
    """The checked metadata of a file's raw header bytes (format ``version``)."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenFileError("header is not valid UTF-8 JSON") from None
    return validate_header(obj, version)


def check_size(size: int, header_end: int, meta: dict) -> None:
    """Check a file of ``size`` bytes against the payload its header (ending at ``header_end``) declares."""
    if meta.get("payload_coding") is not None:
        # the payload size is what the coder made of the codes; hasrd.io.entropy bounds the
        # declared codes by it (with the tables) before decoding anything
        if (size - header_end - CRC_BYTES) % 4:
            raise TokenFileError("truncated or corrupted: an entropy-coded payload is whole 32-bit words")
        return
    expected = header_end + payload_bytes(meta["num_frames"], meta["codebook_sizes"]) + CRC_BYTES
    if size != expected:
        what = "truncated or corrupted" if size < expected else "corrupted (trailing bytes)"
        raise TokenFileError(f"{what}: the header declares {expected} bytes, the file has {size}")


def header_too_short(size: int, header_end: int) -> TokenFileError:
    """The error for a file of ``size`` bytes too short for its header (ending at ``header_end``)
    and its checksum."""
    return TokenFileError(
        f"truncated or corrupted: a header of {header_end} bytes needs a file of at least "
        f"{header_end + CRC_BYTES} bytes, the file has {size}"
    )
