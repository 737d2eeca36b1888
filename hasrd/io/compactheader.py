"""The binary header of ``.hsrd`` token files, format version 3: 15 bytes for a built-in model.

Layout (the specification, with the reasons, is ``docs/token_files.md``)::

    offset  size  field
    0       4     magic b"HSRD"
    4       1     format version (3)
    5       1     flags: bit 0 E entropy-coded payload; bits 1-2 C chunking (0 not recorded,
                  1 one chunk, 2 chunk_frames follows); bit 3 X extension follows; bits 4-5 D
                  frames - expected (0: 0, 1: +1, 2: -1, 3: a zigzag varint follows); bits 6-7 zero
    6       4     the first 4 bytes of the model's fingerprint (8 hex digits)
    10      1     n_q - 1
    11      1     audio: bits 0-3 a code of the original sample rate (0: a varint follows),
                  bits 4-7 the channel count (0: a varint follows)
    12      ...   varints (LEB128), in this order: [orig_sample_rate] [channels] length
                  [frames delta] [chunk_frames]; then [4 bytes of the entropy tables' digest,
                  uint32 codes CRC] if E; then [varint L, L bytes of JSON] if X

The model's codec name, full fingerprint, sample rate, hop length and codebook sizes are not in
the file: they come from the built-in index (:mod:`hasrd.io.modelindex`) by the fingerprint's
prefix, or, for any other model, from the extension (a short JSON object, keys ``c fp sr hop k``,
with the writer's version ``v`` and the caller's ``x``). ``expected`` frames are
``ceil(length * sr / (orig_sample_rate * hop))``.

Every encoding is canonical (one byte string per header): overlong varints, an explicit rate
that has a code, an explicit channel count under 16, an explicit frames delta in -1..1 and an
explicit ``chunk_frames`` not below the frames are refused, as are unknown flag bits.
"""
from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

from hasrd.version import __version__

from . import modelindex
from .header import (
    MAX_CHANNELS,
    MAX_CODEBOOK_SIZE,
    MAX_FRAMES,
    MAX_LENGTH,
    MAX_SAMPLE_RATE,
    TokenFileError,
    frames_cover,
    reject_constant,
    show,
)
from .tokenheader import COMPACT_FORMAT_VERSION, MAGIC, header_bytes, int_field, is_int, str_field

FIXED = struct.Struct("<4sBB4sBB")  # magic, version, flags, fingerprint prefix, n_q - 1, audio byte
FIXED_BYTES = FIXED.size  # 12
CC_STRUCT = struct.Struct("<4sI")  # the tables' digest prefix, the codes' CRC32

F_ENTROPY = 0x01
F_CHUNK_SHIFT, F_CHUNK_MASK = 1, 0x06
CHUNK_NONE, CHUNK_ONE, CHUNK_FRAMES = 0, 1, 2
F_EXTENSION = 0x08
F_DELTA_SHIFT, F_DELTA_MASK = 4, 0x30
DELTA_CODES = {0: 0, 1: 1, 2: -1}  # D -> frames delta; D = 3: a zigzag varint follows
F_RESERVED = 0xC0

#: original sample rates with a one-nibble code (code = index + 1; 0: a varint follows)
RATE_CODES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000,
              352800, 384000)
MAX_INLINE_CHANNELS = 15
MAX_VARINT_BYTES = 7  # 49 bits: above every cap (MAX_LENGTH = 2**44)
MAX_EXTENSION_BYTES = 65535
#: every header byte but the extension's body lies in the first HEAD_BYTES bytes of a file
HEAD_BYTES = FIXED_BYTES + 6 * MAX_VARINT_BYTES + CC_STRUCT.size + 2  # 64
MODEL_KEYS = ("c", "fp", "sr", "hop", "k")  # the extension's model description: all or none
_HEX8 = re.compile(r"[0-9a-f]{8}")


class HeaderTruncated(TokenFileError):
    """The header runs past the end of the bytes given (a truncated file)."""


# ---------------------------------------------------------------------------------------------
# varints


def varint(value: int) -> bytes:
    """LEB128: 7 bits a byte, least significant group first, the top bit set on all but the last."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> int:
    """A signed integer as an unsigned one: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ..."""
    return 2 * value if value >= 0 else -2 * value - 1


def read_varint(buf: bytes | memoryview, pos: int, name: str, lo: int, hi: int) -> tuple[int, int]:
    """The varint at ``buf[pos:]`` in ``lo..hi`` and the offset after it; canonical encodings only."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise HeaderTruncated(f"truncated or corrupted: the header ends inside field {name!r} ({len(buf)} bytes)")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i:
                raise TokenFileError(f"header field {name!r} is an overlong varint")
            if not lo <= value <= hi:
                raise TokenFileError(f"header field {name!r} must be an integer in {lo}..{hi}, got {value}")
            return value, pos + i + 1
    raise TokenFileError(f"header field {name!r} is a varint longer than {MAX_VARINT_BYTES} bytes")


def expected_frames(length: int, orig_sample_rate: int, sample_rate: int, hop_length: int) -> int:
    """``ceil(length * sample_rate / (orig_sample_rate * hop_length))``, exactly (integers)."""
    return -(-(length * sample_rate) // (orig_sample_rate * hop_length))


# ---------------------------------------------------------------------------------------------
# reading


def parse_head(buf: bytes | memoryview) -> tuple[dict, int, int]:
    """The fields of a version 3 header up to the extension's body: ``(fields, offset of the
    extension's body, its length)``; without an extension the offset is the header's end.

    ``buf`` holds the file's first bytes (at least :data:`HEAD_BYTES`, or the whole file);
    :class:`HeaderTruncated` if the header runs past it, :class:`TokenFileError` for any other fault.
    """
    if len(buf) < FIXED_BYTES:
        raise HeaderTruncated(f"truncated or corrupted: a version 3 header needs at least {FIXED_BYTES} bytes, "
                              f"the file has {len(buf)}")
    _, _, flags, prefix, nq1, audio = FIXED.unpack(bytes(buf[:FIXED_BYTES]))
    chunk = (flags & F_CHUNK_MASK) >> F_CHUNK_SHIFT
    if flags & F_RESERVED or chunk > CHUNK_FRAMES:
        raise TokenFileError(f"header flags 0x{flags:02x} use features this hasrd ({__version__}) does not know; upgrade hasrd")
    f: dict[str, Any] = {"flags": flags, "prefix": prefix.hex(), "n_q": nq1 + 1, "chunk": chunk}
    pos = FIXED_BYTES
    rate_code, ch_code = audio & 0x0F, audio >> 4
    if rate_code:
        f["orig_sample_rate"] = RATE_CODES[rate_code - 1]
    else:
        f["orig_sample_rate"], pos = read_varint(buf, pos, "orig_sample_rate", 1, MAX_SAMPLE_RATE)
        if f["orig_sample_rate"] in RATE_CODES:
            raise TokenFileError(f"header field 'orig_sample_rate' {f['orig_sample_rate']} is written out but has a code")
    if ch_code:
        f["channels"] = ch_code
    else:
        f["channels"], pos = read_varint(buf, pos, "channels", MAX_INLINE_CHANNELS + 1, MAX_CHANNELS)
    f["length"], pos = read_varint(buf, pos, "length", 0, MAX_LENGTH)
    d = (flags & F_DELTA_MASK) >> F_DELTA_SHIFT
    if d in DELTA_CODES:
        f["delta"] = DELTA_CODES[d]
    else:
        z, pos = read_varint(buf, pos, "frames delta", 3, 2 * MAX_FRAMES)  # |delta| >= 2: -1..1 have codes
        f["delta"] = (z >> 1) ^ -(z & 1)
    if chunk == CHUNK_FRAMES:
        f["chunk_frames"], pos = read_varint(buf, pos, "chunk_frames", 1, MAX_FRAMES)
    if flags & F_ENTROPY:
        if pos + CC_STRUCT.size > len(buf):
            raise HeaderTruncated(f"truncated or corrupted: the header ends inside the entropy fields ({len(buf)} bytes)")
        digest, f["codes_crc"] = CC_STRUCT.unpack(bytes(buf[pos:pos + CC_STRUCT.size]))
        f["entropy_table"] = digest.hex()
        pos += CC_STRUCT.size
    ext_len = 0
    if flags & F_EXTENSION:
        ext_len, pos = read_varint(buf, pos, "extension length", 2, MAX_EXTENSION_BYTES)
    return f, pos, ext_len


def _parse_extension(raw: bytes, f: dict) -> dict:
    """The checked extension object (keys as written) of a header whose fields are ``f``."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenFileError("header extension is not valid UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise TokenFileError("header extension is not a JSON object")
    have = [k for k in MODEL_KEYS if k in obj]
    if have and len(have) != len(MODEL_KEYS):
        raise TokenFileError(f"header extension gives {', '.join(have)} but not all of {', '.join(MODEL_KEYS)}")
    out: dict[str, Any] = {}
    if have:
        out["c"] = str_field(obj, "c", "codec")
        out["fp"] = fp = str_field(obj, "fp", "fingerprint")
        if fp[:modelindex.PREFIX_HEX] != f["prefix"]:
            raise TokenFileError(f"header extension fingerprint {show(fp)} does not start with the header's {f['prefix']}")
        out["sr"] = int_field(obj, "sr", 1, MAX_SAMPLE_RATE, "sample_rate")
        out["hop"] = int_field(obj, "hop", 1, MAX_SAMPLE_RATE, "hop_length")
        k, n_q = obj["k"], f["n_q"]
        sizes = [k] * n_q if is_int(k) else k
        if not isinstance(sizes, list) or len(sizes) != n_q or not all(
            is_int(s) and 2 <= s <= MAX_CODEBOOK_SIZE for s in sizes
        ):
            raise TokenFileError(
                f"header field 'codebook_sizes' must be an integer or a list of {n_q} integers in 2..{MAX_CODEBOOK_SIZE}"
            )
        out["k"] = sizes
    if "v" in obj:
        out["v"] = str_field(obj, "v", "version")
    if "x" in obj:
        if not isinstance(obj["x"], dict):
            raise TokenFileError("header field 'extra' must be a JSON object")
        out["x"] = obj["x"]
    return out


def _model_of(f: dict, ext: dict) -> dict:
    """The model facts of a header: from its extension, else from the built-in index."""
    if "c" in ext:
        return {"codec": ext["c"], "fingerprint": ext["fp"], "sample_rate": ext["sr"], "hop_length": ext["hop"],
                "codebook_sizes": ext["k"]}
    entry = modelindex.by_prefix(f["prefix"])
    if entry is None:
        raise TokenFileError(
            f"made by a model this hasrd ({__version__}) does not know (fingerprint {f['prefix']}..., not a "
            "built-in model, and the file does not describe it); upgrade hasrd"
        )
    if f["n_q"] > len(entry["codebook_sizes"]):
        raise TokenFileError(f"declares {f['n_q']} codebooks, its model ({entry['name']}) has "
                             f"{len(entry['codebook_sizes'])}")
    return {"codec": entry["codec"], "fingerprint": entry["fingerprint"], "sample_rate": entry["sample_rate"],
            "hop_length": entry["hop_length"], "codebook_sizes": entry["codebook_sizes"][:f["n_q"]]}


def finish_header(f: dict, ext_raw: bytes | None) -> dict:
    """The metadata of a version 3 header (the keys of versions 1 and 2) from :func:`parse_head`'s
    fields and the extension's bytes (None: no extension)."""
    ext = _parse_extension(ext_raw, f) if ext_raw is not None else {}
    model = _model_of(f, ext)
    sr, hop = model["sample_rate"], model["hop_length"]
    n, osr = f["length"], f["orig_sample_rate"]
    nf = expected_frames(n, osr, sr, hop) + f["delta"]
    if not 0 <= nf <= MAX_FRAMES:
        raise TokenFileError(f"header field 'num_frames' must be an integer in 0..{MAX_FRAMES}, got {nf}")
    fr = sr / hop
    if not frames_cover(nf, n, fr, osr):
        raise TokenFileError(f"header is inconsistent: {nf} frames at {fr:g} Hz do not match {n} samples at {osr} Hz")
    meta: dict[str, Any] = {"codec": model["codec"], "fingerprint": model["fingerprint"], "version": ext.get("v"),
                            "sample_rate": sr, "frame_rate": fr, "hop_length": hop, "n_q": f["n_q"],
                            "codebook_sizes": list(model["codebook_sizes"]), "num_frames": nf, "length": n,
                            "orig_sample_rate": osr, "channels": f["channels"]}
    if f["chunk"] == CHUNK_ONE:
        meta["chunk_frames"] = max(nf, 1)
    elif f["chunk"] == CHUNK_FRAMES:
        if f["chunk_frames"] >= nf:
            raise TokenFileError(f"header field 'chunk_frames' {f['chunk_frames']} is written out for a single chunk")
        meta["chunk_frames"] = f["chunk_frames"]
    if "x" in ext:
        meta["extra"] = ext["x"]
    meta["duration"] = n / osr
    meta["format_version"] = COMPACT_FORMAT_VERSION
    if f["flags"] & F_ENTROPY:
        meta.update(payload_coding="range1", entropy_table=f["entropy_table"], codes_crc=f["codes_crc"])
    return meta


def parse_compact(buf: bytes | memoryview) -> tuple[dict, int]:
    """The metadata of the version 3 header at the start of ``buf`` and the offset where it ends."""
    f, at, ext_len = parse_head(buf)
    end = at + ext_len
    if end > len(buf):
        raise HeaderTruncated(f"truncated or corrupted: the header's extension needs {end} bytes, the file has {len(buf)}")
    return finish_header(f, bytes(buf[at:end]) if f["flags"] & F_EXTENSION else None), end


# ---------------------------------------------------------------------------------------------
# writing


def _hop_of(checked: dict) -> int:
    """The whole number of samples per frame a version 3 header records (``sr / frame_rate``)."""
    sr, fr, hop = checked["sample_rate"], checked["frame_rate"], checked["hop_length"]
    if hop is None:
        hop = max(1, round(sr / fr))
    if not math.isclose(sr / hop, fr, rel_tol=1e-9):
        raise TokenFileError(
            f"format version 3 needs a whole number of samples per frame (sample_rate / frame_rate), got "
            f"{sr} Hz / {fr:g} Hz with hop_length {checked['hop_length']}; write format_version=1"
        )
    return hop


def _extension(checked: dict, hop: int, n_q: int) -> dict:
    """What the header's extension holds: the model's description unless the built-in index has
    the model, the writer's version, the caller's ``extra``; ``{}``: no extension."""
    fp, sizes = checked["fingerprint"], checked["codebook_sizes"]
    entry = modelindex.by_fingerprint(fp)
    builtin = entry is not None and (entry["codec"], entry["sample_rate"], entry["hop_length"]) == (
        checked["codec"], checked["sample_rate"], hop) and entry["codebook_sizes"][:n_q] == sizes
    ext: dict[str, Any] = {}
    if not builtin:
        ext.update(c=checked["codec"], fp=fp, sr=checked["sample_rate"], hop=hop,
                   k=sizes[0] if len(set(sizes)) == 1 else sizes)
    if ext or checked.get("extra"):
        ext["v"] = __version__
    if checked.get("extra"):
        ext["x"] = checked["extra"]
    return ext


def compact_header_bytes(meta: dict, n_q: int, frames: int, coding: dict | None = None) -> tuple[bytes, dict]:
    """The version 3 header of a file being written, and its metadata as the reader will see it.

    ``meta`` is checked as for version 1 (:func:`hasrd.io.tokenheader.header_bytes`); ``coding``:
    the ``pc``, ``et``, ``cc`` of an entropy-coded payload.
    """
    _, checked = header_bytes(meta, n_q, frames)  # every field check of the JSON header
    fp = checked["fingerprint"]
    if not _HEX8.match(fp):
        raise TokenFileError(f"format version 3 records the first 8 hex digits of the fingerprint; {show(fp)} "
                             "does not start with 8 lowercase hex digits (write format_version=1)")
    hop = _hop_of(checked)
    n, osr, ch = checked["length"], checked["orig_sample_rate"], checked["channels"]
    delta = frames - expected_frames(n, osr, checked["sample_rate"], hop)
    d = {v: k for k, v in DELTA_CODES.items()}.get(delta, 3)
    ck = checked.get("chunk_frames")
    chunk = CHUNK_NONE if ck is None else CHUNK_ONE if ck >= frames else CHUNK_FRAMES
    ext = _extension(checked, hop, n_q)
    rate_code = RATE_CODES.index(osr) + 1 if osr in RATE_CODES else 0
    ch_code = ch if ch <= MAX_INLINE_CHANNELS else 0
    flags = (F_ENTROPY if coding else 0) | chunk << F_CHUNK_SHIFT | (F_EXTENSION if ext else 0) | d << F_DELTA_SHIFT
    out = bytearray(FIXED.pack(MAGIC, COMPACT_FORMAT_VERSION, flags, bytes.fromhex(fp[:8]), n_q - 1,
                               ch_code << 4 | rate_code))
    if not rate_code:
        out += varint(osr)
    if not ch_code:
        out += varint(ch)
    out += varint(n)
    if d == 3:
        out += varint(zigzag(delta))
    if chunk == CHUNK_FRAMES:
        out += varint(ck)
    if coding:
        out += CC_STRUCT.pack(bytes.fromhex(coding["et"][:8]), coding["cc"])
    if ext:
        try:
            raw = json.dumps(ext, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise TokenFileError(f"meta is not JSON-serialisable: {exc}") from None
        if len(raw) > MAX_EXTENSION_BYTES:
            raise TokenFileError(f"header extension of {len(raw)} bytes exceeds {MAX_EXTENSION_BYTES}")
        out += varint(len(raw)) + raw
    header = bytes(out)
    # the writer applies the reader's checks, so it cannot produce a file the reader refuses
    got, end = parse_compact(header)
    if end != len(header):  # pragma: no cover - a bug of this module, not of the input
        raise TokenFileError(f"internal error: a header of {len(header)} bytes reads back as {end}")
    return header, got
