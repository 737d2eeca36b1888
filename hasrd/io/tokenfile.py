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

The prefix and the header (the constants, the keys and their checks) are
:mod:`hasrd.io.tokenheader`; this module packs the payload and reads and writes the files.
"""
from __future__ import annotations

import os
import zlib
from typing import Any

import numpy as np

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
from .tokenheader import (
    CRC_BYTES,
    CRC_STRUCT,
    ENTROPY_FORMAT_VERSION,
    FORMAT_VERSION,
    HEADER_KEYS,
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
    parse_prefix,
    payload_bytes,
)

__all__ = [
    # the token file (this module)
    "tokens_to_bytes", "tokens_from_bytes", "read_header", "load_tokens", "check_tokens", "save_tokens",
    "token_meta",
    # its layout and header (hasrd.io.tokenheader)
    "MAGIC", "FORMAT_VERSION", "ENTROPY_FORMAT_VERSION", "KNOWN_FORMAT_VERSIONS", "SUFFIX", "PREFIX_BYTES",
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
    header, checked = header_bytes(meta, n_q, frames)
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
        header, _ = header_bytes(meta, n_q, frames, coding)
        body = PREFIX_STRUCT.pack(MAGIC, ENTROPY_FORMAT_VERSION, len(header)) + header + payload
        return body + CRC_STRUCT.pack(zlib.crc32(body))
    body = PREFIX_STRUCT.pack(MAGIC, FORMAT_VERSION, len(header)) + header + _pack(arr, sizes)
    return body + CRC_STRUCT.pack(zlib.crc32(body))


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
    header_len = parse_prefix(bytes(view[:PREFIX_BYTES]))
    header_end = PREFIX_BYTES + header_len
    if size < header_end + CRC_BYTES:
        raise header_too_short(size, header_end)
    crc_ok = zlib.crc32(view[:size - CRC_BYTES]) == CRC_STRUCT.unpack(view[size - CRC_BYTES:])[0]
    try:
        meta = parse_header(bytes(view[PREFIX_BYTES:header_end]), view[4])
    except TokenFileError:
        if not crc_ok:  # a damaged header: say so rather than what the damage looks like
            raise TokenFileError("corrupted: checksum mismatch") from None
        raise
    check_size(size, header_end, meta)
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
    return crc == CRC_STRUCT.unpack(fh.read(CRC_BYTES))[0]


def _open_checked(fh) -> tuple[int, int, dict, bytes]:
    """Read prefix and header of an open file and check the declared size against the real one."""
    size = os.fstat(fh.fileno()).st_size
    prefix = fh.read(PREFIX_BYTES)
    header_len = parse_prefix(prefix)
    header_end = PREFIX_BYTES + header_len
    if size < header_end + CRC_BYTES:
        raise header_too_short(size, header_end)
    raw = fh.read(header_len)
    try:
        meta = parse_header(raw, prefix[4])
    except TokenFileError:
        if not _file_crc_ok(fh, size):
            raise TokenFileError("corrupted: checksum mismatch") from None
        raise
    check_size(size, header_end, meta)
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
