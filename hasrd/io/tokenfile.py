"""The ``.hsrd`` token file: the codes of one audio file, bit-packed, with a small JSON header.

Layout (all integers little-endian; the full specification is ``docs/token_files.md``)::

    offset      size  field
    0           4     magic  b"HSRD"
    4           1     format version (1)
    5           2     H = header length in bytes (uint16)
    7           H     header: compact UTF-8 JSON object (short keys, see HEADER_KEYS)
    7+H         P     payload: codes bit-packed, codebook-major, MSB first, zero-padded to a byte
    7+H+P       4     CRC32 (zlib.crc32) of bytes [0, 7+H+P)

Codebook ``i`` of size ``K_i`` takes ``ceil(log2 K_i)`` bits per code; the payload is the rows
``codes[0, :], codes[1, :], ...`` one after another as a single bit stream, so
``P = ceil(frames * sum_i ceil(log2 K_i) / 8)``.

Format version 2 has the same layout with an entropy-coded payload (whole 32-bit words, see
:mod:`hasrd.io.entropy`) and three more header keys (``pc``, ``et``, ``cc``); it is written only
when entropy tables are given, and read only with them.

The reader never trusts the file: the header size, the declared shape and every code value are
checked against hard caps and against the bytes actually present before anything is allocated,
and every fault is reported as :class:`TokenFileError`. Nothing is ever unpickled.
"""
from __future__ import annotations

import json
import math
import operator
import os
import struct
import zlib
from typing import Any

import numpy as np

from hasrd.version import __version__

from .atomic import atomic_write_bytes
from .entropy import decode_payload, encode_payload
from .header import (
    MAX_CHANNELS,
    MAX_CODEBOOK_SIZE,
    MAX_FRAMES,
    MAX_LENGTH,
    MAX_N_Q,
    MAX_SAMPLE_RATE,
    TokenFileError,
    codec_meta,
    frames_cover,
    reject_constant,
    short_string,
    show,
)

MAGIC = b"HSRD"
FORMAT_VERSION = 1
# Version 2: the same layout, but the payload is entropy-coded with static tables that live with
# the model (hasrd.io.entropy); the header names the coding (pc), the tables (et) and carries a
# checksum of the codes (cc). Writers use it only when asked to (entropy=...).
ENTROPY_FORMAT_VERSION = 2
KNOWN_FORMAT_VERSIONS = (FORMAT_VERSION, ENTROPY_FORMAT_VERSION)
SUFFIX = ".hsrd"

_PREFIX = struct.Struct("<4sBH")  # magic, version, header length
_CRC = struct.Struct("<I")
PREFIX_BYTES = _PREFIX.size  # 7
CRC_BYTES = _CRC.size  # 4
OVERHEAD_BYTES = PREFIX_BYTES + CRC_BYTES  # fixed bytes besides the header and the payload

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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(obj: dict, key: str, lo: int, hi: int, name: str) -> int:
    v = obj.get(key)
    if not _is_int(v) or not lo <= v <= hi:
        raise TokenFileError(f"header field {name!r} must be an integer in {lo}..{hi}, got {show(v)}")
    return v


def _str(obj: dict, key: str, name: str) -> str:
    v = obj.get(key)
    if not short_string(v):
        raise TokenFileError(f"header field {name!r} must be a short printable string, got {show(v)}")
    return v


def _validate_header(obj: Any, version: int = FORMAT_VERSION) -> dict:
    """Check a decoded header object and return the metadata dict (long names)."""
    if not isinstance(obj, dict):
        raise TokenFileError("header is not a JSON object")
    missing = [f"{k} ({HEADER_KEYS[k]!r})" for k in _REQUIRED + ("n_q", "num_frames", "version") if HEADER_KEYS[k] not in obj]
    if missing:
        raise TokenFileError(f"header lacks {', '.join(missing)}")
    meta: dict[str, Any] = {}
    meta["codec"] = _str(obj, "c", "codec")
    meta["fingerprint"] = _str(obj, "fp", "fingerprint")
    meta["version"] = _str(obj, "v", "version")
    meta["sample_rate"] = sr = _int(obj, "sr", 1, MAX_SAMPLE_RATE, "sample_rate")
    fr = obj.get("fr")
    if not isinstance(fr, (int, float)) or isinstance(fr, bool) or not math.isfinite(fr) or not 0 < fr <= sr:
        raise TokenFileError(f"header field 'frame_rate' must be a number in (0, sample_rate], got {show(fr)}")
    meta["frame_rate"] = float(fr)
    meta["hop_length"] = _int(obj, "hop", 1, MAX_SAMPLE_RATE, "hop_length") if "hop" in obj else None
    meta["n_q"] = n_q = _int(obj, "nq", 1, MAX_N_Q, "n_q")
    k = obj.get("k")
    sizes = [k] * n_q if _is_int(k) else k
    if not isinstance(sizes, list) or len(sizes) != n_q or not all(
        _is_int(s) and 2 <= s <= MAX_CODEBOOK_SIZE for s in sizes
    ):
        raise TokenFileError(
            f"header field 'codebook_sizes' must be an integer or a list of {n_q} integers in 2..{MAX_CODEBOOK_SIZE}"
        )
    meta["codebook_sizes"] = list(sizes)
    meta["num_frames"] = nf = _int(obj, "nf", 0, MAX_FRAMES, "num_frames")
    meta["length"] = n = _int(obj, "n", 0, MAX_LENGTH, "length")
    meta["orig_sample_rate"] = osr = _int(obj, "osr", 1, MAX_SAMPLE_RATE, "orig_sample_rate")
    meta["channels"] = _int(obj, "ch", 1, MAX_CHANNELS, "channels")
    if "ck" in obj:
        meta["chunk_frames"] = _int(obj, "ck", 1, MAX_FRAMES, "chunk_frames")
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
        meta["payload_coding"] = _str(obj, "pc", "payload_coding")
        digest = _str(obj, "et", "entropy_table")
        if len(digest) != 16 or any(ch not in "0123456789abcdef" for ch in digest):
            raise TokenFileError(f"header field 'entropy_table' must be 16 hex digits, got {show(digest)}")
        meta["entropy_table"] = digest
        meta["codes_crc"] = _int(obj, "cc", 0, 0xFFFFFFFF, "codes_crc")
    return meta


def _to_int(value: Any, name: str) -> int:
    """An exact integer from ``value`` (Python or numpy integers; not floats or bools)."""
    if isinstance(value, bool):
        raise TokenFileError(f"meta {name} must be an integer, got {show(value)}")
    try:
        return operator.index(value)
    except TypeError:
        raise TokenFileError(f"meta {name} must be an integer, got {show(value)}") from None


def _header_bytes(meta: dict, n_q: int, frames: int, coding: dict | None = None) -> tuple[bytes, dict]:
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
    return header, _validate_header(json.loads(text), ENTROPY_FORMAT_VERSION if coding else FORMAT_VERSION)


# ---------------------------------------------------------------------------------------------
# bit packing


def _pack(codes: np.ndarray, sizes: list[int]) -> bytes:
    n_q, frames = codes.shape
    widths = [bits_for(k) for k in sizes]
    bits = np.empty(frames * sum(widths), dtype=np.uint8)
    offset = 0
    for row, width in zip(codes, widths):
        shifts = np.arange(width - 1, -1, -1, dtype=np.uint32)
        block = bits[offset:offset + frames * width].reshape(frames, width)
        np.bitwise_and(row.astype(np.uint32)[:, None] >> shifts, 1, out=block, casting="unsafe")
        offset += frames * width
    return np.packbits(bits).tobytes()


def _unpack(payload: bytes | memoryview, frames: int, sizes: list[int]) -> np.ndarray:
    widths = [bits_for(k) for k in sizes]
    total = frames * sum(widths)
    raw = np.frombuffer(payload, dtype=np.uint8)
    bits = np.unpackbits(raw)
    if bits[total:].any():
        raise TokenFileError("payload padding bits are not zero")
    codes = np.zeros((len(sizes), frames), dtype=np.int64)
    offset = 0
    for i, (width, size) in enumerate(zip(widths, sizes)):
        block = bits[offset:offset + frames * width].reshape(frames, width)
        row = codes[i]
        for j in range(width):  # one vector op per bit plane, not per code
            row <<= 1
            row |= block[:, j]
        offset += frames * width
        if frames and row.max() >= size:
            bad = int(np.argmax(row >= size))
            raise TokenFileError(
                f"code {int(row[bad])} at codebook {i}, frame {bad} is out of range for codebook size {size}"
            )
    return codes


# ---------------------------------------------------------------------------------------------
# public API


def _as_codes(codes: Any) -> np.ndarray:
    if hasattr(codes, "detach"):  # a torch tensor
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise TokenFileError(f"codes must be [n_q, frames], got shape {tuple(arr.shape)}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TokenFileError(f"codes must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def tokens_to_bytes(codes: Any, meta: dict, entropy: Any = None) -> bytes:
    """Serialise ``codes`` (``[n_q, frames]`` integers) and ``meta`` into ``.hsrd`` bytes.

    ``meta`` needs ``codec, fingerprint, sample_rate, frame_rate, codebook_sizes`` (at least
    ``n_q`` entries; the first ``n_q`` are stored), ``length, orig_sample_rate, channels``, and
    may give ``hop_length``, ``chunk_frames`` and ``extra`` (a small JSON object). ``n_q`` and
    ``num_frames`` come from the codes; ``version`` is always this hasrd's version.

    ``entropy``: entropy tables (:class:`hasrd.io.entropy.EntropyTables`, a model folder holding
    ``entropy.json``, or the file) to write an entropy-coded file (format version 2) instead of
    the bit-packed version 1; the tables must be the model's (same fingerprint).
    """
    arr = _as_codes(codes)
    n_q, frames = arr.shape
    if not 1 <= n_q <= MAX_N_Q:
        raise TokenFileError(f"n_q must be in 1..{MAX_N_Q}, got {n_q}")
    header, checked = _header_bytes(meta, n_q, frames)
    sizes = checked["codebook_sizes"]
    if frames:
        lo, hi = arr.min(axis=1), arr.max(axis=1)
        for i, size in enumerate(sizes):
            if lo[i] < 0 or hi[i] >= size:
                raise TokenFileError(
                    f"codebook {i} holds codes in {int(lo[i])}..{int(hi[i])}, outside 0..{size - 1}"
                )
    if entropy is not None:
        payload, coding = encode_payload(arr, checked, entropy)
        header, _ = _header_bytes(meta, n_q, frames, coding)
        body = _PREFIX.pack(MAGIC, ENTROPY_FORMAT_VERSION, len(header)) + header + payload
        return body + _CRC.pack(zlib.crc32(body))
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + _pack(arr, sizes)
    return body + _CRC.pack(zlib.crc32(body))


def _parse_prefix(prefix: bytes) -> int:
    """Check magic and version; return the header length."""
    if len(prefix) < PREFIX_BYTES:
        raise TokenFileError("not a hasrd token file (too short)")
    magic, version, header_len = _PREFIX.unpack(prefix[:PREFIX_BYTES])
    if magic != MAGIC:
        raise TokenFileError("not a hasrd token file (bad magic bytes)")
    if version not in KNOWN_FORMAT_VERSIONS:
        if version > max(KNOWN_FORMAT_VERSIONS):
            raise TokenFileError(
                f"token format version {version} is newer than this hasrd ({__version__}) reads "
                f"(versions {', '.join(map(str, KNOWN_FORMAT_VERSIONS))}); upgrade hasrd"
            )
        raise TokenFileError(f"unknown token format version {version}")
    return header_len


def _parse_header(raw: bytes, version: int = FORMAT_VERSION) -> dict:
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenFileError("header is not valid UTF-8 JSON") from None
    return _validate_header(obj, version)


def _check_size(size: int, header_end: int, meta: dict) -> None:
    if meta["format_version"] == ENTROPY_FORMAT_VERSION:
        # the payload size is what the coder made of the codes; hasrd.io.entropy bounds the
        # declared codes by it (with the tables) before decoding anything
        if (size - header_end - CRC_BYTES) % 4:
            raise TokenFileError("truncated or corrupted: an entropy-coded payload is whole 32-bit words")
        return
    expected = header_end + payload_bytes(meta["num_frames"], meta["codebook_sizes"]) + CRC_BYTES
    if size != expected:
        what = "truncated or corrupted" if size < expected else "corrupted (trailing bytes)"
        raise TokenFileError(f"{what}: the header declares {expected} bytes, the file has {size}")


def _header_too_short(size: int, header_end: int) -> TokenFileError:
    return TokenFileError(
        f"truncated or corrupted: a header of {header_end - PREFIX_BYTES} bytes needs a file of at least "
        f"{header_end + CRC_BYTES} bytes, the file has {size}"
    )


def tokens_from_bytes(data: bytes | bytearray | memoryview, tables: Any = None) -> tuple[np.ndarray, dict]:
    """Parse ``.hsrd`` bytes into ``(codes int64 [n_q, frames], meta)``; any fault -> TokenFileError.

    ``tables``: for an entropy-coded file (format version 2), its model's entropy tables
    (:class:`hasrd.io.entropy.EntropyTables`, a model folder or an ``entropy.json``); without
    them, or with other tables, such a file raises TokenFileError. Ignored for version 1.
    """
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        raise TokenFileError(f"expected bytes, got {type(data).__name__}") from None
    size = len(view)
    header_len = _parse_prefix(bytes(view[:PREFIX_BYTES]))
    header_end = PREFIX_BYTES + header_len
    if size < header_end + CRC_BYTES:
        raise _header_too_short(size, header_end)
    crc_ok = zlib.crc32(view[:size - CRC_BYTES]) == _CRC.unpack(view[size - CRC_BYTES:])[0]
    try:
        meta = _parse_header(bytes(view[PREFIX_BYTES:header_end]), view[4])
    except TokenFileError:
        if not crc_ok:  # a damaged header: say so rather than what the damage looks like
            raise TokenFileError("corrupted: checksum mismatch") from None
        raise
    _check_size(size, header_end, meta)
    if not crc_ok:
        raise TokenFileError("corrupted: checksum mismatch")
    if meta["format_version"] == ENTROPY_FORMAT_VERSION:
        return decode_payload(view[header_end:size - CRC_BYTES], meta, tables), meta
    codes = _unpack(view[header_end:size - CRC_BYTES], meta["num_frames"], meta["codebook_sizes"])
    return codes, meta


def _file_crc_ok(fh, size: int) -> bool:
    """Stream the checksum of an open file (no full read into memory)."""
    if size < CRC_BYTES:
        return False
    fh.seek(0)
    crc, left = 0, size - CRC_BYTES
    while left:
        block = fh.read(min(left, 1 << 20))
        if not block:
            return False
        crc = zlib.crc32(block, crc)
        left -= len(block)
    return crc == _CRC.unpack(fh.read(CRC_BYTES))[0]


def _open_checked(fh) -> tuple[int, int, dict, bytes]:
    """Read prefix and header of an open file and check the declared size against the real one."""
    size = os.fstat(fh.fileno()).st_size
    prefix = fh.read(PREFIX_BYTES)
    header_len = _parse_prefix(prefix)
    header_end = PREFIX_BYTES + header_len
    if size < header_end + CRC_BYTES:
        raise _header_too_short(size, header_end)
    raw = fh.read(header_len)
    try:
        meta = _parse_header(raw, prefix[4])
    except TokenFileError:
        if not _file_crc_ok(fh, size):
            raise TokenFileError("corrupted: checksum mismatch") from None
        raise
    _check_size(size, header_end, meta)
    return size, header_end, meta, prefix + raw


def read_header(path: str | os.PathLike) -> dict:
    """The metadata of a token file, checked against the file size, without reading the codes.

    The checksum and the code values are not verified; :func:`load_tokens` does that.
    """
    with open(path, "rb") as fh:
        return _open_checked(fh)[2]


def load_tokens(path: str | os.PathLike, tables: Any = None) -> tuple[np.ndarray, dict]:
    """Read a ``.hsrd`` file: ``(codes int64 [n_q, frames], meta)``.

    ``tables``: needed for an entropy-coded file, see :func:`tokens_from_bytes`.

    Raises:
        TokenFileError: the file is not a valid token file (any fault of its bytes).
        OSError: the file cannot be opened (missing, a directory, no permission).
    """
    with open(path, "rb") as fh:
        # every declared size is checked against the real file size before the rest is read
        size, header_end, _, head = _open_checked(fh)
        data = bytearray(size)
        data[:header_end] = head
        view = memoryview(data)
        got = header_end
        while got < size:
            n = fh.readinto(view[got:])
            if not n:
                raise TokenFileError(f"truncated: file shrank while being read ({got} of {size} bytes)")
            got += n
    return tokens_from_bytes(data, tables)


def check_tokens(path: str | os.PathLike, tables: Any = None) -> dict:
    """The metadata of a token file after every check that can be made.

    A bit-packed file, or an entropy-coded one with ``tables``, is read in full (codes checked);
    an entropy-coded file without tables gets its header, size and checksum verified (decoding
    its codes needs the tables). Raises TokenFileError like :func:`load_tokens`.
    """
    with open(path, "rb") as fh:
        size, _, meta, _ = _open_checked(fh)
        if meta["format_version"] == ENTROPY_FORMAT_VERSION and tables is None:
            if not _file_crc_ok(fh, size):
                raise TokenFileError("corrupted: checksum mismatch")
            return meta
    return load_tokens(path, tables)[1]


def save_tokens(path: str | os.PathLike, codes: Any, meta: dict, entropy: Any = None) -> int:
    """Write a ``.hsrd`` file atomically (a temp file in the same folder, then ``os.replace``).

    Returns the number of bytes written. See :func:`tokens_to_bytes` for ``codes``, ``meta`` and
    ``entropy`` (entropy tables: write an entropy-coded file).
    """
    data = tokens_to_bytes(codes, meta, entropy)
    atomic_write_bytes(path, data)
    return len(data)


def token_meta(codec: Any, length: int, orig_sample_rate: int, channels: int = 1, **extra: Any) -> dict:
    """The ``meta`` for codes of ``codec`` made from ``length`` samples at ``orig_sample_rate``.

    ``codec`` is any :class:`hasrd.codecs.base.Codec`; keyword arguments (``chunk_frames``,
    ``extra``) are passed through.
    """
    shape = {"codebook_sizes": [int(k) for k in codec.codebook_sizes]}
    return codec_meta(codec, shape, length, orig_sample_rate, channels, **extra)
