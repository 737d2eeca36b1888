"""Token format version 3: the binary header, byte by byte; its size bound for every built-in
model; the model facts from the built-in index or the extension; version 1 and 2 files still
read; and a fuzzed reader (varints, canonical encodings, huge declared sizes)."""
from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from hasrd.io import (
    TokenFileError,
    compactheader as ch,
    load_tokens,
    modelindex,
    save_tokens,
    tokenfile as tf,
    tokens_from_bytes,
    tokens_to_bytes,
)
from hasrd.version import __version__
from tests.io.test_tokenfile import check_reader, make_meta, random_codes

DATA = Path(__file__).resolve().parent / "data"
V1_FILE = DATA / "cmu_cards_001_v1.hsrd"  # hasrd encode --n-q 3 of hasrd/assets/eval/cmu_cards_001.wav, before v3
V2_FILE = DATA / "cmu_cards_001_v2.hsrd"  # the same with --entropy
V2_TABLES = DATA / "default_entropy.json"  # the default model's tables that V2_FILE was coded with


def builtin_meta(name: str = "default", frames: int = 55, length: int = 17526, osr: int = 16000, channels: int = 1,
                 **extra) -> dict:
    """The ``meta`` a built-in model gives its files, from the index (no model is loaded)."""
    e = next(e for e in modelindex.entries() if e["name"] == name and e["current"])
    meta = {"codec": e["codec"], "fingerprint": e["fingerprint"], "sample_rate": e["sample_rate"],
            "hop_length": e["hop_length"], "frame_rate": e["frame_rate"], "codebook_sizes": e["codebook_sizes"],
            "length": length, "orig_sample_rate": osr, "channels": channels}
    meta.update(extra)
    return meta


def frames_for(meta: dict) -> int:
    return ch.expected_frames(meta["length"], meta["orig_sample_rate"], meta["sample_rate"], meta["hop_length"])


def v3(codes, meta, **kw) -> bytes:
    data = tokens_to_bytes(codes, meta, **kw)
    assert data[4] == 3
    return data


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def refit(data: bytes, header: bytes) -> bytes:
    """``data`` with its header replaced by ``header`` and the CRC recomputed."""
    end = ch.parse_compact(data)[1]
    return with_crc(header + data[end:-4])


# ---------------------------------------------------------------------------------------------
# the layout, byte by byte


def test_layout_of_a_builtin_file_byte_by_byte():
    """The 1.1 s evaluation clip at n_q 3 with the default model, as docs/token_files.md spells it."""
    codes = tf.load_tokens(V1_FILE)[0]
    meta = builtin_meta(chunk_frames=1500)
    data = v3(codes, meta)
    fp = bytes.fromhex(meta["fingerprint"][:8])
    header = b"HSRD" + bytes([3, 0b0000_0010]) + fp + bytes([3 - 1, 0x10 | 4]) + bytes([0xF6, 0x88, 0x01])
    assert 17526 == 0x76 | 0x08 << 7 | 0x01 << 14  # LEB128 f6 88 01
    assert data[:15] == header
    assert len(data) == 15 + 207 + 4 == 226  # payload: ceil(55 x 30 / 8) bytes
    assert data[15:-4] == tokens_to_bytes(codes, meta, format_version=1)[-4 - 207:-4]  # the same bit packing
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    # the 1.1 s clip: at most nominal x duration + 32 bytes (issue 49)
    assert len(data) <= 1500 * meta["length"] / 16000 / 8 + 32


def test_flags_and_optional_fields():
    meta = builtin_meta(length=44100 * 100, osr=44100, channels=2, chunk_frames=1500)
    frames = frames_for(meta)  # 5000
    data = v3(np.zeros((2, frames), np.int64), meta)
    assert data[5] == ch.CHUNK_FRAMES << 1  # chunked: chunk_frames follows
    assert data[11] == 0x20 | (ch.RATE_CODES.index(44100) + 1)
    assert data[12:16] == ch.varint(44100 * 100) and data[16:18] == ch.varint(1500)
    # a rate without a code and 20 channels are written out; one frame more than expected: D = 1
    meta = builtin_meta(length=37800, osr=37800, channels=20)
    data = v3(np.zeros((1, frames_for(meta) + 1), np.int64), meta)
    assert data[5] >> 4 & 3 == 1 and data[11] == 0
    assert data[12:19] == ch.varint(37800) + ch.varint(20) + ch.varint(37800)
    # two frames fewer: D = 3 and a zigzag varint; no chunk_frames: C = 0
    meta = builtin_meta(length=16000 * 10)
    data = v3(np.zeros((1, frames_for(meta) - 2), np.int64), meta)
    assert data[5] == 3 << 4 and data[15:16] == bytes([ch.zigzag(-2)]) == b"\x03"
    meta_back = tokens_from_bytes(data)[1]
    assert meta_back["num_frames"] == frames_for(meta) - 2 and "chunk_frames" not in meta_back


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2 ** 32, 2 ** 44])
def test_varints(value):
    raw = ch.varint(value)
    assert len(raw) == max(1, -(-value.bit_length() // 7))
    assert ch.read_varint(raw + b"\xff", 0, "x", 0, 2 ** 49) == (value, len(raw))
    assert ch.zigzag(3) == 6 and ch.zigzag(-3) == 5


@pytest.mark.parametrize("raw, match", [
    (b"\x80\x00", "overlong"), (b"\xff\x80\x00", "overlong"), (b"\x80" * 7 + b"\x01", "longer than 7"),
    (b"\xff" * 20, "longer than 7"), (b"\x80\x80", "truncated"), (b"", "truncated"), (b"\x80\x80\x80\x80\x01", "0..100"),
])
def test_bad_varints(raw, match):
    with pytest.raises(TokenFileError, match=match):
        ch.read_varint(raw, 0, "x", 0, 100)


# ---------------------------------------------------------------------------------------------
# size: at most 24 bytes for a built-in model


def test_header_at_most_24_bytes_for_every_builtin_model():
    """Everything but the payload and the CRC, for every built-in model and n_q, common and odd
    rates, 1 to 15 channels, 0.1 s to 10 h, chunked or not: at most 24 bytes bit-packed, and 8
    more entropy-coded (``coding`` given to the header writer directly, no tables needed)."""
    cases = 0
    for e in modelindex.entries():
        for n_q in range(1, len(e["codebook_sizes"]) + 1):
            for osr in (8000, 16000, 22050, 44100, 48000, 96000, 37800):
                for seconds, chunk in ((0.1, None), (1.1, 1500), (4, 1500), (3600 * 10, 1500), (3600 * 10, None)):
                    for channels in (1, 2, 15):
                        meta = builtin_meta(e["name"], length=int(seconds * osr), osr=osr, channels=channels,
                                            chunk_frames=chunk)
                        frames = frames_for(meta)
                        header, got = ch.compact_header_bytes(meta, n_q, frames)
                        assert len(header) <= 24, (e["name"], n_q, osr, seconds, len(header))
                        assert got["codec"] == e["codec"] and "extra" not in got
                        coded, _ = ch.compact_header_bytes(meta, n_q, frames, {"pc": "range1", "et": "ab" * 8, "cc": 7})
                        assert len(coded) == len(header) + 8
                        cases += 1
    assert cases > 500
    # the evaluation clips' case (16 kHz mono, under 2**21 samples, one chunk): 15 bytes
    assert len(ch.compact_header_bytes(builtin_meta(chunk_frames=1500), 3, 55)[0]) == 15


def test_size_against_version_1():
    codes, meta = tf.load_tokens(V1_FILE)
    assert V1_FILE.stat().st_size - len(v3(codes, meta)) == 359 - 226


# ---------------------------------------------------------------------------------------------
# the model's facts: from the index, or from the extension


@pytest.mark.parametrize("name", [e["name"] for e in modelindex.entries() if e["current"]])
def test_builtin_model_facts_come_from_the_index(name):
    meta = builtin_meta(name, chunk_frames=10)
    frames = frames_for(meta)
    n_q = len(meta["codebook_sizes"])
    codes = random_codes(np.random.default_rng(0), meta["codebook_sizes"], frames)
    data = v3(codes, meta)
    assert not data[5] & ch.F_EXTENSION
    out, got = tokens_from_bytes(data)
    np.testing.assert_array_equal(out, codes)
    for key in ("codec", "fingerprint", "sample_rate", "hop_length", "codebook_sizes", "length", "orig_sample_rate"):
        assert got[key] == meta[key], key
    assert got["frame_rate"] == meta["frame_rate"] and got["n_q"] == n_q and got["num_frames"] == frames
    assert got["version"] is None  # not in the file, and not the model's to tell
    assert got["chunk_frames"] == 10 and got["format_version"] == 3


def test_other_models_and_extra_go_to_the_extension():
    meta = make_meta([1024, 512], 40, osr=48000, channels=2)
    data = v3(random_codes(np.random.default_rng(1), [1024, 512], 40), meta)
    end = ch.parse_compact(data)[1]
    ext = json.loads(data[data.index(b"{"):end])
    assert ext == {"c": "hasrd", "fp": meta["fingerprint"], "sr": 16000, "hop": 320, "k": [1024, 512], "v": __version__}
    got = tokens_from_bytes(data)[1]
    assert got["fingerprint"] == meta["fingerprint"] and got["version"] == __version__ and got["codebook_sizes"] == [1024, 512]
    # a built-in model with the caller's extra: only the writer's version and the extra
    data = v3(np.zeros((1, 55), np.int64), builtin_meta(extra={"speaker": "s1"}))
    assert data[5] & ch.F_EXTENSION and b'"c"' not in data and tokens_from_bytes(data)[1]["extra"] == {"speaker": "s1"}
    # a meta claiming a built-in fingerprint with other facts is described, not trusted to the index
    lie = builtin_meta(codebook_sizes=[2048] * 6)
    data = v3(np.zeros((1, 55), np.int64), lie)
    assert data[5] & ch.F_EXTENSION and tokens_from_bytes(data)[1]["codebook_sizes"] == [2048]


def test_writer_refusals_of_version_3():
    codes = np.zeros((1, 2), np.int64)
    with pytest.raises(TokenFileError, match="8 lowercase hex"):
        tokens_to_bytes(codes, make_meta([1024], 2, fingerprint="my-model"))
    assert tokens_to_bytes(codes, make_meta([1024], 2, fingerprint="my-model"), format_version=1)[4] == 1
    odd = make_meta([1024], 2)
    odd.update(hop_length=None, frame_rate=48.7)
    with pytest.raises(TokenFileError, match="whole number of samples per frame"):
        tokens_to_bytes(codes, odd)
    with pytest.raises(TokenFileError, match="format_version"):
        tokens_to_bytes(codes, make_meta([1024], 2), format_version=4)
    with pytest.raises(TokenFileError, match="entropy tables"):
        tokens_to_bytes(codes, make_meta([1024], 2), format_version=2)


def test_unknown_model_without_extension_is_refused_in_one_line():
    data = bytearray(v3(np.zeros((1, 55), np.int64), builtin_meta()))
    data[6:10] = bytes.fromhex("00c0ffee")
    with pytest.raises(TokenFileError, match=r"does not know \(fingerprint 00c0ffee.*upgrade hasrd"):
        tokens_from_bytes(with_crc(bytes(data[:-4])))
    # more codebooks than the built-in model has
    data = bytearray(v3(np.zeros((1, 55), np.int64), builtin_meta()))
    data[10] = 6  # n_q 7 of the default's 6
    with pytest.raises(TokenFileError, match="declares 7 codebooks"):
        tokens_from_bytes(with_crc(bytes(data[:-4])))


# ---------------------------------------------------------------------------------------------
# versions 1 and 2 still read


def test_committed_version_1_and_2_files_still_load():
    codes1, meta1 = load_tokens(V1_FILE)
    codes2, meta2 = load_tokens(V2_FILE, V2_TABLES)
    assert (meta1["format_version"], meta2["format_version"]) == (1, 2)
    np.testing.assert_array_equal(codes1, codes2)
    assert codes1.shape == (3, 55) and meta1["fingerprint"] == meta2["fingerprint"]
    assert meta1["codec"] == "hasrd" and meta1["length"] == 17526 and meta1["chunk_frames"] == 1500
    # resaved as version 3, bit-packed and entropy-coded: the same codes and facts
    for kw, tables in (({}, None), ({"entropy": V2_TABLES}, V2_TABLES)):
        data = v3(codes1, meta1, **kw)
        out, meta3 = tokens_from_bytes(data, tables)
        np.testing.assert_array_equal(out, codes1)
        for key in ("codec", "fingerprint", "sample_rate", "frame_rate", "hop_length", "n_q", "codebook_sizes",
                    "num_frames", "length", "orig_sample_rate", "channels", "duration"):
            assert meta3[key] == meta1[key], key
    assert meta3["entropy_table"] == meta2["entropy_table"][:8] and meta3["codes_crc"] == meta2["codes_crc"]
    # and written again in the old versions, byte for byte (the writer's version aside)
    if meta1["version"] == __version__:
        assert tokens_to_bytes(codes1, meta1, format_version=1) == V1_FILE.read_bytes()
        assert tokens_to_bytes(codes1, meta1, V2_TABLES, format_version=2) == V2_FILE.read_bytes()


def test_file_round_trip_and_layout(tmp_path):
    codes, meta = load_tokens(V1_FILE)
    path = tmp_path / "a.hsrd"
    n = save_tokens(path, codes, meta)
    assert tf.token_layout(path) == {"format_version": 3, "bytes": n, "header_bytes": 15, "overhead_bytes": 4,
                                     "payload_bytes": 207}
    assert tf.token_layout(V1_FILE) == {"format_version": 1, "bytes": 359, "header_bytes": 141, "overhead_bytes": 11,
                                        "payload_bytes": 207}
    out, again = load_tokens(path)
    np.testing.assert_array_equal(out, codes)
    assert tf.read_header(path) == again
    save_tokens(tmp_path / "b.hsrd", out, again)  # what was loaded saves to the same bytes
    assert (tmp_path / "b.hsrd").read_bytes() == path.read_bytes()


def test_long_extension_read_from_a_file(tmp_path):
    """An extension longer than the first bytes read from a file; then truncated inside it."""
    meta = make_meta([1024], 20, extra={"note": "x" * 3000})
    path = tmp_path / "a.hsrd"
    save_tokens(path, np.ones((1, 20), np.int64), meta)
    assert load_tokens(path)[1]["extra"] == {"note": "x" * 3000}
    data = path.read_bytes()
    (tmp_path / "cut.hsrd").write_bytes(data[:1000])
    with pytest.raises(TokenFileError, match="truncated"):
        load_tokens(tmp_path / "cut.hsrd")


# ---------------------------------------------------------------------------------------------
# hostile input


def base_files() -> list[bytes]:
    rng = np.random.default_rng(3)
    meta = builtin_meta(chunk_frames=1500)
    out = [v3(random_codes(rng, [1024] * 3, 55), meta),
           v3(random_codes(rng, [1024] * 2, 5000), builtin_meta(length=44100 * 100, osr=44100, channels=2,
                                                                chunk_frames=1500)),
           v3(random_codes(rng, [1024], 0), builtin_meta(length=0)),
           v3(random_codes(rng, [1024] * 6, 55), builtin_meta(extra={"k": [1, 2]})),
           v3(random_codes(rng, [1024] * 3, 55), meta, entropy=V2_TABLES)]
    return out


@pytest.mark.parametrize("which", range(5))
def test_every_header_byte_set_to_every_value(which):
    """Each header byte replaced by each of its 256 values, the CRC recomputed: refused with a
    TokenFileError or read as a coherent file, never another exception."""
    data = base_files()[which]
    end = min(ch.parse_compact(data)[1], 40)
    loaded = refused = 0
    for pos in range(end):
        for value in range(256):
            mutated = bytearray(data)
            mutated[pos] = value
            if check_reader_tables(with_crc(bytes(mutated[:-4]))):
                loaded += 1
            else:
                refused += 1
    assert refused > 0 and loaded > 0


def check_reader_tables(data: bytes) -> bool:
    try:
        codes, meta = tokens_from_bytes(data, V2_TABLES)
    except TokenFileError:
        return False
    assert codes.shape == (meta["n_q"], meta["num_frames"])
    if codes.size:
        assert (codes.max(axis=1) < np.array(meta["codebook_sizes"])).all() and codes.min() >= 0
    return True


def test_fuzz_mutations_of_builtin_files():
    """Truncations and bit flips never load; other damage loads coherent codes or is refused."""
    rng = np.random.default_rng(99)
    bases = base_files()
    for i in range(1500):
        base = bytearray(bases[i % len(bases)])
        kind = i % 4
        if kind == 0:
            assert not check_reader_tables(bytes(base[: int(rng.integers(0, len(base)))]))
        elif kind == 1:
            pos = int(rng.integers(0, len(base) * 8))
            base[pos // 8] ^= 1 << (pos % 8)
            assert not check_reader_tables(bytes(base))
        elif kind == 2:
            junk = rng.integers(0, 256, size=int(rng.integers(0, 80)), dtype=np.uint8).tobytes()
            check_reader_tables(b"HSRD\x03" + junk)
            check_reader_tables(with_crc(b"HSRD\x03" + junk))
        else:
            extra = rng.integers(0, 256, size=int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
            assert not check_reader_tables(bytes(base) + extra)


def test_fuzz_hypothesis_v3():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    base = base_files()[0]

    @hypothesis.settings(max_examples=400, deadline=None, derandomize=True)
    @hypothesis.given(st.binary(max_size=64), st.integers(0, len(base)), st.booleans(), st.booleans())
    def run(blob, pos, splice, fix_crc):
        out = base[:pos] + blob + base[pos + len(blob):] if splice else b"HSRD\x03" + blob
        if fix_crc and len(out) > 4:
            out = with_crc(out[:-4])
        check_reader(out)

    run()


DEFAULT_FP = builtin_meta()["fingerprint"]


def ext(text: str) -> bytes:
    """An extension: its length and its bytes."""
    return ch.varint(len(text.encode())) + text.encode()


def header(flags: int, rest: bytes, prefix: str | None = None, n_q: int = 1, audio: int = 0x14) -> bytes:
    """A hand-made version 3 header (the default model's fingerprint prefix unless given)."""
    fp = bytes.fromhex(prefix or builtin_meta()["fingerprint"][:8])
    return ch.FIXED.pack(b"HSRD", 3, flags, fp, n_q - 1, audio) + rest


@pytest.mark.parametrize("head, match", [
    (header(0x40, ch.varint(320)), "upgrade hasrd"),
    (header(0x80, ch.varint(320)), "upgrade hasrd"),
    (header(3 << 1, ch.varint(320)), "upgrade hasrd"),
    (header(0, ch.varint(16000), audio=0x10), "has a code"),  # 16 kHz written out
    (header(0, ch.varint(2) + ch.varint(320), audio=0x04), "channels"),  # 2 channels written out
    (header(3 << 4, ch.varint(320) + ch.varint(0)), "frames delta"),  # delta 0 written out
    (header(3 << 4, ch.varint(320) + ch.varint(2)), "frames delta"),  # delta +1 written out
    (header(2 << 1, ch.varint(320) + ch.varint(5)), "single chunk"),  # chunk_frames >= frames
    (header(0, b"\x80\x00"), "overlong"),
    (header(0, b"\xff" * 8), "longer than 7"),
    (header(0, ch.varint(2 ** 44 + 1)), "length"),
    (header(ch.F_EXTENSION, ch.varint(320) + ch.varint(1) + b"{"), "extension length"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext("[1]")), "not a JSON object"),
    (header(ch.F_EXTENSION, ch.varint(320) + ch.varint(4) + b"\xff{}x"), "not valid UTF-8 JSON"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext('{"c":"x"}\x00')), "not valid UTF-8 JSON"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext('{"sr":NaN}')), "not valid UTF-8 JSON"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext('{"c":"x"}')), "but not all"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext('{"c":"x","fp":"ffffffff00000000","sr":16000,"hop":320,"k":2}')),
     "does not start with"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext('{"c":"x","fp":"%s","sr":16000,"hop":320,"k":[2,2]}' % DEFAULT_FP)),
     "codebook_sizes"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext('{"c":"x","fp":"%s","sr":16000,"hop":0,"k":2}' % DEFAULT_FP)),
     "hop_length"),
    (header(ch.F_EXTENSION, ch.varint(320) + ext('{"x":[1,2,3]}')), "extra"),
    (header(ch.F_EXTENSION, ch.varint(320) + ch.varint(70000)), "extension length"),
    (header(0, ch.varint(320 * 1000)), "declares"),  # 1000 frames behind a 1-frame payload
    (header(3 << 4, ch.varint(320 * 100) + ch.varint(ch.zigzag(1000))), "inconsistent"),  # 1100 frames for 100
    (header(3 << 4, ch.varint(320 * 100) + ch.varint(ch.zigzag(-1000))), "num_frames"),  # -900 frames
])
def test_hostile_v3_headers(head, match):
    with pytest.raises(TokenFileError, match=match):
        tokens_from_bytes(with_crc(head + bytes(2)))


@pytest.mark.parametrize("length, entropy", [(2 ** 44, False), (2 ** 44, True), (2 ** 32 * 320, False),
                                             (10 ** 9, True)])
def test_huge_declared_sizes_refused_before_allocating(length, entropy):
    """A header declaring up to 2**44 samples (8.8e9 frames is over the cap; 2**32 frames is not)
    behind a tiny payload: refused with under 1 MiB allocated."""
    from hasrd.io.entropy import EntropyTables

    tables = EntropyTables.load(V2_TABLES)
    for i in range(3):
        tables._model(i)  # build the coder models before measuring
    rest = ch.varint(length) + (ch.CC_STRUCT.pack(bytes.fromhex(tables.digest[:8]), 0) if entropy else b"")
    data = with_crc(header(ch.F_ENTROPY if entropy else 0, rest, n_q=3) + bytes(64))
    tracemalloc.start()
    try:
        with pytest.raises(TokenFileError, match="num_frames|declares|need at least"):
            tokens_from_bytes(data, tables)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
