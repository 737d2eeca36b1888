"""The ``.hsrd`` token file: the codes of one audio file, bit-packed or entropy-coded, with a header.

Format version 3 (what writers write; the full specification is ``docs/token_files.md``)::

    offset      size  field
    0           4     magic  b"HSRD"
    4           1     format version (3)
    5           H-5   the rest of the binary header (hasrd.io.compactheader): flags, the first 4
                      bytes of the model's fingerprint, n_q, the original rate, channels, length
                      and the few other fields as varints (15 bytes in all for a built-in model)
    H           P     payload: codes bit-packed, codebook-major, MSB first, zero-padded to a byte
                      (or entropy-coded, flag E: whole 32-bit words, see hasrd.io.entropy)
    H+P         4     CRC32 (zlib.crc32) of bytes [0, H+P)

Format versions 1 and 2 (still read; written on request, ``format_version=1`` or ``2``)::

    0           4     magic  b"HSRD"
    4           1     format version (1, or 2 for an entropy-coded payload)
    5           2     H = header length in bytes (uint16)
    7           H     header: compact UTF-8 JSON object (short keys, see HEADER_KEYS)
    7+H         P     payload (as above)
    7+H+P       4     CRC32 (zlib.crc32) of bytes [0, 7+H+P)

Codebook ``i`` of size ``K_i`` takes ``ceil(log2 K_i)`` bits per code in a bit-packed payload;
the rows ``codes[0, :], codes[1, :], ...`` form one bit stream, so
``P = ceil(frames * sum_i ceil(log2 K_i) / 8)``. An entropy-coded payload is read only with the
model's entropy tables.

The reader never trusts the file: the header size, the declared shape and every code value are
checked against hard caps and against the bytes actually present before anything is allocated,
and every fault is reported as :class:`TokenFileError`. Nothing is ever unpickled.

The headers (the constants, the keys and their checks) are :mod:`hasrd.io.tokenheader` (versions
1 and 2) and :mod:`hasrd.io.compactheader` (version 3); this module packs the payload and reads
and writes the files.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from .atomic import atomic_write_bytes
from .compactheader import HEAD_BYTES, HeaderTruncated, compact_header_bytes, finish_header, parse_head
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
from .tokenheader import (
    COMPACT_FORMAT_VERSION,
    CRC_BYTES,
    CRC_STRUCT,
    ENTROPY_FORMAT_VERSION,
    FORMAT_VERSION,
    HEADER_KEYS,
    JSON_FORMAT_VERSION,
    KNOWN_FORMAT_VERSIONS,
    MAGIC,
    MAX_HEADER_BYTES,
    OVERHEAD_BYTES,
    PREFIX_BYTES,
    PREFIX_STRUCT,
    SUFFIX,
    bits_for,
    check_size,
    header_bytes,
    header_too_short,
    parse_header,
    parse_magic,
    parse_prefix,
    payload_bytes,
)

__all__ = [
    # the token file (this module)
    "tokens_to_bytes", "tokens_from_bytes", "read_header", "load_tokens", "check_tokens", "save_tokens",
    "token_meta", "token_layout",
    # its layout and header (hasrd.io.tokenheader)
    "MAGIC", "FORMAT_VERSION", "JSON_FORMAT_VERSION", "ENTROPY_FORMAT_VERSION", "COMPACT_FORMAT_VERSION",
    "KNOWN_FORMAT_VERSIONS", "SUFFIX", "PREFIX_BYTES",
    "CRC_BYTES", "OVERHEAD_BYTES", "MAX_HEADER_BYTES", "HEADER_KEYS", "bits_for", "payload_bytes",
    # shared with the latent files (hasrd.io.header) and the writer (hasrd.io.atomic)
    "TokenFileError", "MAX_CHANNELS", "MAX_CODEBOOK_SIZE", "MAX_FRAMES", "MAX_LENGTH", "MAX_N_Q",
    "MAX_SAMPLE_RATE", "codec_meta", "frames_cover", "reject_constant", "short_string", "show",
    "atomic_write_bytes",
]

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


def tokens_to_bytes(codes: Any, meta: dict, entropy: Any = None, format_version: int | None = None) -> bytes:
    """Serialise ``codes`` (``[n_q, frames]`` integers) and ``meta`` into ``.hsrd`` bytes.

    ``meta`` needs ``codec, fingerprint, sample_rate, frame_rate, codebook_sizes`` (at least
    ``n_q`` entries; the first ``n_q`` are stored), ``length, orig_sample_rate, channels``, and
    may give ``hop_length``, ``chunk_frames`` and ``extra`` (a small JSON object). ``n_q`` and
    ``num_frames`` come from the codes; ``version`` is always this hasrd's version.

    ``entropy``: entropy tables (:class:`hasrd.io.entropy.EntropyTables`, a model folder holding
    ``entropy.json``, or the file) to entropy-code the payload instead of bit-packing it; the
    tables must be the model's (same fingerprint).

    ``format_version``: 3 (the default, :data:`FORMAT_VERSION`: the binary header, whose model
    facts come from the built-in index or an extension), 1 (JSON header, bit-packed) or 2 (JSON
    header, entropy-coded: needs ``entropy``), for readers older than version 3.
    """
    version = FORMAT_VERSION if format_version is None else format_version
    if version not in KNOWN_FORMAT_VERSIONS:
        raise TokenFileError(f"format_version must be one of {', '.join(map(str, KNOWN_FORMAT_VERSIONS))}, got {version!r}")
    if version == JSON_FORMAT_VERSION and entropy is not None:
        raise TokenFileError("format version 1 is bit-packed; an entropy-coded payload needs format version 2 or 3")
    if version == ENTROPY_FORMAT_VERSION and entropy is None:
        raise TokenFileError("format version 2 is entropy-coded: pass the model's entropy tables (entropy=...)")
    arr = _as_codes(codes)
    n_q, frames = arr.shape
    if not 1 <= n_q <= MAX_N_Q:
        raise TokenFileError(f"n_q must be in 1..{MAX_N_Q}, got {n_q}")
    make_header = compact_header_bytes if version == COMPACT_FORMAT_VERSION else header_bytes
    header, checked = make_header(meta, n_q, frames)
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
        header, _ = make_header(meta, n_q, frames, coding)
    else:
        payload = _pack(arr, sizes)
    if version != COMPACT_FORMAT_VERSION:  # versions 1 and 2: magic, version, header length first
        header = PREFIX_STRUCT.pack(MAGIC, version, len(header)) + header
    body = header + payload
    return body + CRC_STRUCT.pack(zlib.crc32(body))


def _read_head(head: bytes | memoryview, size: int, more: Callable[[int], bytes],
               crc_ok: Callable[[], bool]) -> tuple[dict, int, bytes]:
    """``(meta, header end, header bytes)`` of a file of ``size`` bytes, checked against ``size``.

    ``head``: the file's first bytes (the whole file, or at least ``HEAD_BYTES`` of it);
    ``more(n)``: the ``n`` bytes that follow ``head``; ``crc_ok()``: whether the file's checksum
    holds, asked only to word the error of a header that does not parse (damage, not a lie).
    """
    version = parse_magic(head)
    if version == COMPACT_FORMAT_VERSION:
        try:
            fields, at, ext_len = parse_head(head)
        except HeaderTruncated:
            raise
        except TokenFileError:
            if not crc_ok():
                raise TokenFileError("corrupted: checksum mismatch") from None
            raise
        header_end, start = at + ext_len, at
    else:
        header_end, start = PREFIX_BYTES + parse_prefix(head), PREFIX_BYTES
    if size < header_end + CRC_BYTES:
        raise header_too_short(size, header_end)
    raw = bytes(head[:header_end])
    if len(raw) < header_end:  # a long JSON header or extension: the size check above bounds it
        raw += more(header_end - len(raw))
    try:
        if version == COMPACT_FORMAT_VERSION:
            meta = finish_header(fields, raw[start:header_end] if ext_len else None)
        else:
            meta = parse_header(raw[start:header_end], version)
    except TokenFileError:
        if not crc_ok():  # a damaged header: say so rather than what the damage looks like
            raise TokenFileError("corrupted: checksum mismatch") from None
        raise
    check_size(size, header_end, meta)
    return meta, header_end, raw


def tokens_from_bytes(data: bytes | bytearray | memoryview, tables: Any = None) -> tuple[np.ndarray, dict]:
    """Parse ``.hsrd`` bytes into ``(codes int64 [n_q, frames], meta)``; any fault -> TokenFileError.

    ``tables``: for an entropy-coded file, its model's entropy tables
    (:class:`hasrd.io.entropy.EntropyTables`, a model folder or an ``entropy.json``); without
    them, or with other tables, such a file raises TokenFileError. Ignored for bit-packed files.
    """
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        raise TokenFileError(f"expected bytes, got {type(data).__name__}") from None
    size = len(view)
    crc: list[bool] = []

    def crc_ok() -> bool:
        if not crc:
            crc.append(size >= CRC_BYTES and zlib.crc32(view[:size - CRC_BYTES]) == CRC_STRUCT.unpack(view[size - CRC_BYTES:])[0])
        return crc[0]

    meta, header_end, _ = _read_head(view, size, lambda n: b"", crc_ok)
    if not crc_ok():
        raise TokenFileError("corrupted: checksum mismatch")
    payload = view[header_end:size - CRC_BYTES]
    if meta.get("payload_coding") is not None:
        return decode_payload(payload, meta, tables), meta
    return _unpack(payload, meta["num_frames"], meta["codebook_sizes"]), meta


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
    return crc == CRC_STRUCT.unpack(fh.read(CRC_BYTES))[0]


def _open_checked(fh) -> tuple[int, int, dict, bytes]:
    """Read the header of an open file and check the declared size against the real one:
    ``(size, header end, meta, the header's bytes)``."""
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(HEAD_BYTES)
    meta, header_end, raw = _read_head(head, size, fh.read, lambda: _file_crc_ok(fh, size))
    return size, header_end, meta, raw


def read_header(path: str | os.PathLike) -> dict:
    """The metadata of a token file, checked against the file size, without reading the codes.

    The checksum and the code values are not verified; :func:`load_tokens` does that.
    """
    with open(path, "rb") as fh:
        return _open_checked(fh)[2]


def token_layout(path: str | os.PathLike) -> dict:
    """Where a token file's bytes go: ``{"format_version", "bytes", "header_bytes",
    "overhead_bytes", "payload_bytes"}`` (``bytes`` = the other three summed). ``header_bytes``
    is the JSON header of versions 1 and 2 (``overhead_bytes``: the 7-byte prefix and the CRC)
    and every byte before the payload in version 3 (``overhead_bytes``: the CRC). Checked like
    :func:`read_header`."""
    with open(path, "rb") as fh:
        size, header_end, meta, _ = _open_checked(fh)
    compact = meta["format_version"] == COMPACT_FORMAT_VERSION
    header = header_end if compact else header_end - PREFIX_BYTES
    overhead = CRC_BYTES if compact else OVERHEAD_BYTES
    return {"format_version": meta["format_version"], "bytes": size, "header_bytes": header,
            "overhead_bytes": overhead, "payload_bytes": size - header - overhead}


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
        fh.seek(header_end)
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
        if meta.get("payload_coding") is not None and tables is None:
            if not _file_crc_ok(fh, size):
                raise TokenFileError("corrupted: checksum mismatch")
            return meta
    return load_tokens(path, tables)[1]


def save_tokens(path: str | os.PathLike, codes: Any, meta: dict, entropy: Any = None,
                format_version: int | None = None, overwrite: bool = True) -> int:
    """Write a ``.hsrd`` file atomically (a temp file in the same folder, then ``os.replace``).

    Returns the number of bytes written. See :func:`tokens_to_bytes` for ``codes``, ``meta``,
    ``entropy`` (entropy tables: write an entropy-coded file) and ``format_version``.
    ``overwrite=False``: ``FileExistsError`` if ``path`` exists by the time the file is complete.
    """
    data = tokens_to_bytes(codes, meta, entropy, format_version)
    atomic_write_bytes(path, data, overwrite)
    return len(data)


def token_meta(codec: Any, length: int, orig_sample_rate: int, channels: int = 1, **extra: Any) -> dict:
    """The ``meta`` for codes of ``codec`` made from ``length`` samples at ``orig_sample_rate``.

    ``codec`` is any :class:`hasrd.codecs.base.Codec`; keyword arguments (``chunk_frames``,
    ``extra``) are passed through.
    """
    shape = {"codebook_sizes": [int(k) for k in codec.codebook_sizes]}
    return codec_meta(codec, shape, length, orig_sample_rate, channels, **extra)
