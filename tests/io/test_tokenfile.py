"""The .hsrd token file: round trips, size bound, writer checks, and a fuzzed reader."""
from __future__ import annotations

import json
import math
import os
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from hasrd.io import TokenFileError, load_tokens, save_tokens, tokenfile as tf, tokens_from_bytes, tokens_to_bytes
from hasrd.io.compactheader import parse_compact
from hasrd.version import __version__


def make_meta(sizes, frames, sr=16000, hop=320, osr=None, channels=1, **extra):
    osr = osr or sr
    fr = sr / hop
    meta = {
        "codec": "hasrd",
        "fingerprint": "0123456789abcdef",
        "sample_rate": sr,
        "hop_length": hop,
        "frame_rate": fr,
        "codebook_sizes": list(sizes),
        # a length whose ceil in frames is `frames` (the last frame partly filled)
        "length": max(0, round((frames - 0.5) * osr / fr)) if frames else 0,
        "orig_sample_rate": osr,
        "channels": channels,
    }
    meta.update(extra)
    return meta


def random_codes(rng, sizes, frames):
    return np.stack([rng.integers(0, k, size=frames) for k in sizes]) if sizes else np.zeros((0, frames), np.int64)


def build(header: dict, payload: bytes = b"", version: int = tf.JSON_FORMAT_VERSION, fix_crc: bool = True) -> bytes:
    """Hand-made version 1 (JSON header) file bytes with any header (for hostile-input tests)."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    body = struct.pack("<4sBH", b"HSRD", version, len(raw)) + raw + payload
    return body + struct.pack("<I", zlib.crc32(body) if fix_crc else 0)


def header_end(data: bytes) -> int:
    """Where the payload of a (well-formed) file starts, in any format version."""
    if data[4] == tf.COMPACT_FORMAT_VERSION:
        return parse_compact(data)[1]
    return tf.PREFIX_BYTES + struct.unpack("<H", data[5:7])[0]


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("version", [1, 3])
@pytest.mark.parametrize("sizes", [[2], [1000], [1024], [4096], [2, 1000, 1024, 4096], [1024] * 8, [3, 5, 7, 1 << 24]])
@pytest.mark.parametrize("frames", [0, 1, 7, 250])
def test_bytes_round_trip(sizes, frames, version):
    rng = np.random.default_rng(frames + len(sizes))
    codes = random_codes(rng, sizes, frames)
    meta = make_meta(sizes, frames, osr=44100, channels=2)
    data = tokens_to_bytes(codes, meta, format_version=version)
    assert data[4] == version
    out, got = tokens_from_bytes(data)
    assert got["format_version"] == version
    assert out.dtype == np.int64
    assert out.shape == (len(sizes), frames)
    np.testing.assert_array_equal(out, codes)
    assert got["n_q"] == len(sizes)
    assert got["num_frames"] == frames
    assert got["codebook_sizes"] == list(sizes)
    for key in ("codec", "fingerprint", "sample_rate", "hop_length", "length", "orig_sample_rate", "channels"):
        assert got[key] == meta[key], key
    assert got["frame_rate"] == pytest.approx(meta["frame_rate"])
    assert got["version"] == __version__
    assert got["duration"] == pytest.approx(meta["length"] / 44100)
    # extreme values survive too
    edge_codes = np.stack([np.full(frames, k - 1) for k in sizes])
    np.testing.assert_array_equal(tokens_from_bytes(tokens_to_bytes(edge_codes, meta, format_version=version))[0], edge_codes)


def test_writer_writes_version_3_by_default():
    assert tf.FORMAT_VERSION == 3
    assert tokens_to_bytes(np.zeros((1, 2), np.int64), make_meta([1024], 2))[4] == 3


@pytest.mark.parametrize("n_q", [1, 2, 5, 8])
def test_prefix_of_codebooks(n_q):
    """Meta may list all of the model's codebook sizes; the first n_q are stored."""
    sizes = [1024] * 8
    rng = np.random.default_rng(n_q)
    codes = random_codes(rng, sizes[:n_q], 40)
    out, meta = tokens_from_bytes(tokens_to_bytes(codes, make_meta(sizes, 40)))
    assert meta["codebook_sizes"] == sizes[:n_q]
    np.testing.assert_array_equal(out, codes)


@pytest.mark.parametrize("version", [1, 3])
def test_file_round_trip_is_atomic_and_readable(tmp_path, version):
    rng = np.random.default_rng(0)
    sizes = [1024, 1024, 256]
    codes = random_codes(rng, sizes, 100)
    path = tmp_path / "a.hsrd"
    n = save_tokens(path, codes, make_meta(sizes, 100, extra={"speaker": "s1"}, chunk_frames=50), format_version=version)
    assert n == path.stat().st_size
    assert sorted(os.listdir(tmp_path)) == ["a.hsrd"]  # no temp file left behind
    assert path.stat().st_mode & 0o444  # ordinary permissions, not mkstemp's 0600 only
    out, meta = load_tokens(path)
    np.testing.assert_array_equal(out, codes)
    assert meta["extra"] == {"speaker": "s1"} and meta["chunk_frames"] == 50
    assert tf.read_header(path)["num_frames"] == 100
    # saving again from what was loaded reproduces the same bytes
    save_tokens(tmp_path / "b.hsrd", out, meta, format_version=version)
    assert (tmp_path / "b.hsrd").read_bytes() == path.read_bytes()


def test_torch_tensor_codes():
    torch = pytest.importorskip("torch")
    codes = torch.randint(0, 1024, (2, 30))
    out, _ = tokens_from_bytes(tokens_to_bytes(codes, make_meta([1024, 1024], 30)))
    np.testing.assert_array_equal(out, codes.numpy())


@pytest.mark.parametrize("version", [1, 3])
def test_packing_order_is_codebook_major_msb_first(version):
    codes = np.array([[1, 0, 1], [3, 2, 1]])  # K=2 (1 bit) then K=4 (2 bits)
    data = tokens_to_bytes(codes, make_meta([2, 4], 3), format_version=version)
    payload = data[header_end(data):-4]
    # bits: 1 0 1 | 11 10 01 -> 1011 1100 1000 0000 (zero-padded)
    assert payload == bytes([0b10111100, 0b10000000])
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_long_file_is_fast():
    """An hour at 50 Hz with 8 codebooks packs and unpacks well under a few seconds."""
    rng = np.random.default_rng(1)
    frames = 3600 * 50
    codes = rng.integers(0, 1024, size=(8, frames))
    meta = make_meta([1024] * 8, frames)
    t0 = time.perf_counter()
    out, _ = tokens_from_bytes(tokens_to_bytes(codes, meta))
    assert time.perf_counter() - t0 < 5.0
    np.testing.assert_array_equal(out, codes)


# ---------------------------------------------------------------------------------------------
# size


def overhead_of(data: bytes) -> int:
    """Every byte of a file but its payload: header (and prefix) and CRC."""
    return header_end(data) + tf.CRC_BYTES


@pytest.mark.parametrize("version", [1, 3])
@pytest.mark.parametrize("sizes", [[1024] * 8, [1024] * 32, [2048, 1024, 1024, 1024], [4096, 4096]])
def test_header_small_and_size_bound(sizes, version):
    from hasrd.rates import bitrate

    frames = 10 * 50  # 10 s at 50 Hz
    meta = make_meta(sizes, frames, osr=44100, channels=2, chunk_frames=1500)
    data = tokens_to_bytes(random_codes(np.random.default_rng(0), sizes, frames), meta, format_version=version)
    overhead = overhead_of(data)
    # a model outside the built-in index: version 3 carries its description (~90 bytes of JSON)
    assert overhead <= (267 if version == 1 else 140), overhead
    _, got = tokens_from_bytes(data)
    nominal = bitrate(got["frame_rate"], got["codebook_sizes"], got["n_q"])
    # covered duration (whole frames): the bound is exact for power-of-two codebooks
    covered = got["num_frames"] / got["frame_rate"]
    assert len(data) <= math.ceil(nominal * covered / 8) + overhead
    # original duration: plus at most one frame of codes
    one_frame = math.ceil(sum(tf.bits_for(k) for k in got["codebook_sizes"]) / 8)
    assert len(data) <= nominal * got["duration"] / 8 + overhead + one_frame


@pytest.mark.parametrize("version", [1, 3])
def test_size_formula_for_any_codebook_sizes(version):
    sizes = [1000, 3, 5000]
    frames = 333
    data = tokens_to_bytes(random_codes(np.random.default_rng(0), sizes, frames), make_meta(sizes, frames),
                           format_version=version)
    assert len(data) == overhead_of(data) + math.ceil(frames * (10 + 2 + 13) / 8)


# ---------------------------------------------------------------------------------------------
# the writer refuses bad input


@pytest.mark.parametrize(
    "codes, meta_change, match",
    [
        (np.array([[0, 1024]]), {}, "outside"),
        (np.array([[-1, 0]]), {}, "outside"),
        (np.array([[0.5, 1.0]]), {}, "integers"),
        (np.zeros((1, 1, 2), np.int64), {}, r"\[n_q, frames\]"),
        (np.zeros((0, 2), np.int64), {}, "n_q"),
        (np.zeros((2, 2), np.int64), {"codebook_sizes": [1024]}, "codebook sizes"),
        (np.zeros((1, 2), np.int64), {"codec": None}, "lacks"),
        (np.zeros((1, 2), np.int64), {"n_q": 3}, "does not match"),
        (np.zeros((1, 2), np.int64), {"sample_rate": 16000.5}, "integer"),
        (np.zeros((1, 2), np.int64), {"frame_rate": float("nan")}, "frame_rate"),
        (np.zeros((1, 2), np.int64), {"codebook_sizes": [1]}, "codebook_sizes"),
        (np.zeros((1, 2), np.int64), {"length": 10 ** 6}, "inconsistent"),
        (np.zeros((1, 2), np.int64), {"extra": {"x": object()}}, "JSON"),
    ],
)
def test_writer_rejects(codes, meta_change, match):
    meta = make_meta([1024], codes.shape[-1] if codes.ndim else 0)
    meta.update(meta_change)
    with pytest.raises(TokenFileError, match=match):
        tokens_to_bytes(codes, meta)


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(TokenFileError):
        save_tokens(tmp_path / "a.hsrd", np.array([[5000]]), make_meta([1024], 1))
    with pytest.raises(OSError):
        save_tokens(tmp_path / "missing" / "a.hsrd", np.array([[5]]), make_meta([1024], 1))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# the reader on hostile input


def good_file(sizes=(1024, 1024, 4096, 2), frames=60, seed=0, version=1, **meta) -> bytes:
    rng = np.random.default_rng(seed)
    return tokens_to_bytes(random_codes(rng, sizes, frames), make_meta(sizes, frames, **meta), format_version=version)


def check_reader(data: bytes) -> bool:
    """Load or raise TokenFileError, nothing else; if it loads, the result is coherent."""
    try:
        codes, meta = tokens_from_bytes(data)
    except TokenFileError:
        return False
    assert codes.dtype == np.int64 and codes.shape == (meta["n_q"], meta["num_frames"])
    if codes.size:
        assert (codes.min(axis=1) >= 0).all()
        assert (codes.max(axis=1) < np.array(meta["codebook_sizes"])).all()
    return True


@pytest.mark.parametrize("version", [1, 3])
def test_fuzz_mutations(version):
    """≥1000 seeded mutations: truncations, bit flips, byte runs, random files; none may escape."""
    rng = np.random.default_rng(1234 + version)
    bases = [good_file(version=version), good_file((1000,), 3, 1, version),
             good_file((2, 2048), 0, 2, version), good_file((1024,) * 8, 17, 3, version)]
    loaded = 0
    cases = 0
    for i in range(1500):
        base = bytearray(bases[i % len(bases)])
        kind = i % 6
        if kind == 0:  # truncation: never loads
            cut = int(rng.integers(0, len(base)))
            assert not check_reader(bytes(base[:cut]))
        elif kind == 1:  # one flipped bit: the CRC catches every single-bit error
            pos = int(rng.integers(0, len(base) * 8))
            base[pos // 8] ^= 1 << (pos % 8)
            assert not check_reader(bytes(base))
        elif kind == 2:  # several random bytes overwritten
            for _ in range(int(rng.integers(1, 8))):
                base[int(rng.integers(0, len(base)))] = int(rng.integers(0, 256))
            loaded += check_reader(bytes(base))
        elif kind == 3:  # random garbage, sometimes behind a valid magic and version
            junk = rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
            if i % 12 == 3:
                junk = b"HSRD" + bytes([version]) + junk
            loaded += check_reader(junk)
        elif kind == 4:  # trailing bytes appended
            extra = rng.integers(0, 256, size=int(rng.integers(1, 20)), dtype=np.uint8).tobytes()
            assert not check_reader(bytes(base) + extra)
        else:  # payload bytes changed and the CRC recomputed: only out-of-range codes may fail
            start, end = header_end(bytes(base)), len(base) - 4
            if end > start:
                base[int(rng.integers(start, end))] = int(rng.integers(0, 256))
            base[-4:] = struct.pack("<I", zlib.crc32(bytes(base[:-4])))
            loaded += check_reader(bytes(base))
        cases += 1
    assert cases >= 1000
    assert loaded > 0  # the recomputed-CRC cases mostly still decode


@pytest.mark.parametrize("version", [1, 3])
def test_fuzz_hypothesis(version):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    base = good_file(version=version)

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(st.binary(max_size=400), st.integers(0, len(base)), st.booleans())
    def run(blob, pos, splice):
        data = base[:pos] + blob + base[pos + len(blob):] if splice else blob
        check_reader(data)

    run()


BASE_HEADER = {"c": "hasrd", "fp": "0123456789abcdef", "sr": 16000, "hop": 320, "fr": 50, "nq": 1, "k": 1024,
               "nf": 2, "n": 600, "osr": 16000, "ch": 1, "v": "0.1.0"}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"nf": 2 ** 32, "n": 2 ** 32 * 320}, "declares"),  # huge but within caps: size check first
        ({"nf": 2 ** 40}, "num_frames"),
        ({"nq": 10 ** 9}, "n_q"),
        ({"nq": 256, "k": 1 << 24, "nf": 2 ** 32, "n": 2 ** 32 * 320}, "declares"),
        ({"k": 1 << 40}, "codebook_sizes"),
        ({"k": [1024, 1024]}, "codebook_sizes"),
        ({"k": 1}, "codebook_sizes"),
        ({"k": True}, "codebook_sizes"),
        ({"nq": 0}, "n_q"),
        ({"nf": -1}, "num_frames"),
        ({"sr": "16000"}, "sample_rate"),
        ({"fr": float("inf")}, "header is not valid"),  # json.dumps writes Infinity, which strict JSON lacks
        ({"fr": 0}, "frame_rate"),
        ({"c": ""}, "codec"),
        ({"c": "x" * 1000}, "codec"),
        ({"fp": None}, "fingerprint"),
        ({"n": 10 ** 12}, "inconsistent"),
        ({"ch": 0}, "channels"),
        ({"x": [1]}, "extra"),
    ],
)
def test_hostile_headers(change, match):
    header = {**BASE_HEADER, **change}
    header = {k: v for k, v in header.items() if v is not None}
    if header["fr"] == float("inf"):
        raw = json.dumps(header, separators=(",", ":")).encode()  # 'Infinity'
        body = struct.pack("<4sBH", b"HSRD", 1, len(raw)) + raw + bytes(3)
        data = body + struct.pack("<I", zlib.crc32(body))
    else:
        data = build(header, payload=bytes(3))
    tracemalloc.start()
    try:
        with pytest.raises(TokenFileError, match=match):
            tokens_from_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # refused before allocating anything the size of the declared codes


def test_hand_built_file_loads():
    codes, meta = tokens_from_bytes(build(BASE_HEADER, payload=bytes(3)))
    assert codes.shape == (1, 2) and not codes.any() and meta["hop_length"] == 320


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "too short"),
        (b"HSRD", "too short"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "magic"),
        (b"HSRD\x04\x00\x00\x00\x00\x00\x00", "newer"),
        (b"HSRD\x00\x00\x00\x00\x00\x00\x00", "version"),
        (b"HSRD\x01\xff\xff" + b"{}", "truncated"),
    ],
)
def test_bad_prefix(data, match):
    with pytest.raises(TokenFileError, match=match):
        tokens_from_bytes(data)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00garbage",  # not UTF-8
        b"[" * 60000,  # nesting deep enough to hit the recursion limit
        b"{\"nq\": 1" + b"1" * 5000 + b"}",  # an integer longer than Python parses from text
        b"[1,2,3]",
        b"null",
        b"{}",
    ],
)
def test_bad_header_json(raw):
    body = struct.pack("<4sBH", b"HSRD", 1, len(raw)) + raw
    data = body + struct.pack("<I", zlib.crc32(body))
    with pytest.raises(TokenFileError):
        tokens_from_bytes(data)


def test_out_of_range_code_with_valid_crc():
    # K=1000 takes 10 bits, so 1023 is representable but not a valid code
    header = {**BASE_HEADER, "k": 1000, "nf": 1, "n": 300}
    data = build(header, payload=bytes([0xFF, 0xC0]))
    with pytest.raises(TokenFileError, match="out of range"):
        tokens_from_bytes(data)


def test_nonzero_padding_rejected():
    header = {**BASE_HEADER, "k": 2, "nf": 1, "n": 300}
    with pytest.raises(TokenFileError, match="padding"):
        tokens_from_bytes(build(header, payload=bytes([0x01])))


def test_load_tokens_errors(tmp_path):
    good = good_file()
    cases = {
        "empty.hsrd": b"",
        "trunc.hsrd": good[: len(good) // 2],
        "flip.hsrd": good[:10] + bytes([good[10] ^ 0x08]) + good[11:],
        "huge.hsrd": build({**BASE_HEADER, "nf": 2 ** 32, "n": 2 ** 32 * 320}, payload=bytes(3)),
        "wav.hsrd": b"RIFF" + bytes(100),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TokenFileError):
            load_tokens(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_tokens(tmp_path / "missing.hsrd")
    # a header damaged into something still parseable is reported as corruption
    with pytest.raises(TokenFileError, match="checksum|corrupted"):
        load_tokens(tmp_path / "flip.hsrd")
