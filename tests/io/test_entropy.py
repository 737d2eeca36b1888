"""Entropy-coded token files (format versions 2 and 3): tables, lossless round trips, size, hostile input."""
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
from hasrd.io.entropy import TABLES_NAME, EntropyTables, fit_tables
from tests.io.test_tokenfile import header_end, make_meta, random_codes

FP = "0123456789abcdef"
SIZES = [1024, 1000, 64, 2]


def model(sizes, fp=FP) -> dict:
    return {"codec": "hasrd", "fingerprint": fp, "codebook_sizes": list(sizes)}


def zipf(k: int, s: float, seed: int) -> np.ndarray:
    """A Zipf-like distribution over ``k`` codes, ranks shuffled."""
    p = 1.0 / np.arange(1, k + 1) ** s
    p = p[np.random.default_rng(seed).permutation(k)]
    return p / p.sum()


def entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def sample(rng, dists, frames, run_rows=()) -> np.ndarray:
    rows = []
    for i, p in enumerate(dists):
        if i in run_rows:  # runs of geometric length (mean 4) of one code
            out = np.empty(frames, np.int64)
            t = 0
            while t < frames:
                n = int(rng.geometric(0.25))
                out[t:t + n] = rng.choice(len(p), p=p)
                t += n
            rows.append(out)
        else:
            rows.append(rng.choice(len(p), size=frames, p=p))
    return np.stack(rows) if rows else np.zeros((0, frames), np.int64)


def payload_len(data: bytes) -> int:
    return len(data) - header_end(data) - tf.CRC_BYTES


@pytest.fixture(scope="module")
def uniform_tables():
    rng = np.random.default_rng(7)
    return fit_tables([random_codes(rng, SIZES, 400) for _ in range(3)], model(SIZES))


@pytest.fixture(scope="module")
def skewed():
    """Zipf codebooks, the first with runs; tables fitted on 20 000 frames."""
    sizes = [1024, 1024, 256, 64]
    dists = [zipf(k, 1.2, seed=i) for i, k in enumerate(sizes)]
    rng = np.random.default_rng(11)
    train = [sample(rng, dists, 2000, run_rows=(0,)) for _ in range(10)]
    return sizes, dists, fit_tables(train, model(sizes)), rng


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("frames", [0, 1, 7, 250])
@pytest.mark.parametrize("n_q", [1, 2, 4])
def test_round_trip_random_codes(uniform_tables, frames, n_q, version):
    rng = np.random.default_rng(frames * 10 + n_q)
    sizes = SIZES[:n_q]
    codes = random_codes(rng, sizes, frames)
    meta = make_meta(SIZES, frames, osr=44100, channels=2, chunk_frames=100)
    data = tokens_to_bytes(codes, meta, entropy=uniform_tables, format_version=version)
    assert data[4] == version
    out, got = tokens_from_bytes(data, uniform_tables)
    assert out.dtype == np.int64 and out.shape == (n_q, frames)
    np.testing.assert_array_equal(out, codes)
    assert got["format_version"] == version and got["payload_coding"] == "range1"
    # version 3 records the digest's first 8 hex digits (and the codes' CRC, as version 2)
    assert got["entropy_table"] == uniform_tables.digest[: 16 if version == 2 else 8]
    assert got["codebook_sizes"] == sizes and got["num_frames"] == frames
    assert got["chunk_frames"] == (100 if version == 2 or frames > 100 else max(frames, 1))
    # the same codes in a version 1 file, and extremes of every codebook
    np.testing.assert_array_equal(tokens_from_bytes(tokens_to_bytes(codes, meta))[0], out)
    edge = np.stack([np.full(frames, k - 1) for k in sizes])
    np.testing.assert_array_equal(tokens_from_bytes(tokens_to_bytes(edge, meta, entropy=uniform_tables), uniform_tables)[0], edge)


def test_round_trip_skewed_with_runs(skewed):
    sizes, dists, tables, rng = skewed
    codes = sample(rng, dists, 3000, run_rows=(0,))
    data = tokens_to_bytes(codes, make_meta(sizes, 3000), entropy=tables)
    np.testing.assert_array_equal(tokens_from_bytes(data, tables)[0], codes)


@pytest.mark.parametrize("version", [2, 3])
def test_file_round_trip_and_tables_from_folder(tmp_path, skewed, version):
    sizes, dists, tables, rng = skewed
    codes = sample(rng, dists, 500, run_rows=(0,))
    folder = tmp_path / "model"
    folder.mkdir()
    assert tables.save(folder) == folder / TABLES_NAME
    path = tmp_path / "a.hsrd"
    n = save_tokens(path, codes, make_meta(sizes, 500), entropy=folder, format_version=version)  # tables from the model folder
    assert n == path.stat().st_size and sorted(os.listdir(tmp_path)) == ["a.hsrd", "model"]
    for source in (folder, folder / TABLES_NAME, tables, str(folder)):
        out, meta = load_tokens(path, source)
        np.testing.assert_array_equal(out, codes)
    assert tf.read_header(path)["format_version"] == version
    # without tables: the header, size and checksum can still be checked
    assert tables.digest.startswith(tf.check_tokens(path)["entropy_table"])
    # saving again what was loaded, with the same tables, gives the same bytes
    save_tokens(tmp_path / "b.hsrd", out, meta, entropy=tables, format_version=version)
    assert (tmp_path / "b.hsrd").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("version", [1, 3])
def test_bit_packed_unchanged(uniform_tables, version):
    codes = random_codes(np.random.default_rng(0), SIZES, 50)
    data = tokens_to_bytes(codes, make_meta(SIZES, 50), format_version=version)
    assert data[4] == version and b'"pc"' not in data and not (version == 3 and data[5] & 1)
    a, meta_a = tokens_from_bytes(data)
    b, meta_b = tokens_from_bytes(data, uniform_tables)  # tables are not needed and change nothing
    np.testing.assert_array_equal(a, b)
    assert meta_a == meta_b and "payload_coding" not in meta_a and meta_a["format_version"] == version


def test_long_file_is_fast(uniform_tables):
    """An hour at 50 Hz of 4 codebooks entropy-codes and decodes in a few seconds."""
    rng = np.random.default_rng(1)
    frames = 3600 * 50
    codes = random_codes(rng, SIZES, frames)
    t0 = time.perf_counter()
    data = tokens_to_bytes(codes, make_meta(SIZES, frames), entropy=uniform_tables)
    out, _ = tokens_from_bytes(data, uniform_tables)
    assert time.perf_counter() - t0 < 5.0
    np.testing.assert_array_equal(out, codes)


# ---------------------------------------------------------------------------------------------
# size against the entropy


def test_skewed_codes_compress_to_their_entropy(skewed):
    """Held-out codes cost about their entropy: below the cross-entropy under the fitted tables
    plus the coder's flush, and that is below the bit-packed size by what the entropy predicts."""
    sizes, dists, tables, rng = skewed
    frames = 5000
    codes = sample(rng, dists, frames, run_rows=())  # no runs: plain Zipf codes in every row
    data = tokens_to_bytes(codes, make_meta(sizes, frames), entropy=tables)
    payload_bits = 8 * payload_len(data)
    cross = sum(tables.expected_bits(i, codes[i]) for i in range(len(sizes)))
    # the range coder is within its flush (two 32-bit words) and 0.1 % of the ideal code length
    assert payload_bits <= cross * 1.001 + 64
    # the fitted tables are close to the true distributions: cross-entropy within 0.1 bit/code
    # of the entropy, except codebook 0, whose table was fitted on runs (repeat flag)
    true_bits = [frames * entropy_bits(p) for p in dists]
    for i in range(1, len(sizes)):
        assert tables.repeat[i] is None or tables.repeat_probability(i) < 0.1
        assert tables.expected_bits(i, codes[i]) <= true_bits[i] + frames * 0.1, i
    packed_bits = frames * sum(tf.bits_for(k) for k in sizes)
    bound = cross * 1.001 + 64
    assert bound < packed_bits
    assert payload_bits < packed_bits - 0.5 * (packed_bits - sum(true_bits))


def test_repeat_flag_pays_off_on_runs(skewed):
    sizes, dists, tables, rng = skewed
    assert tables.repeat[0] is not None and tables.repeat_probability(0) > 0.5  # fitted on runs
    codes = sample(rng, dists[:1], 4000, run_rows=(0,))
    plain = fit_tables([codes], model(sizes), repeat=False)
    flagged = fit_tables([codes], model(sizes), repeat=True)
    meta = make_meta(sizes, 4000)
    n_plain = payload_len(tokens_to_bytes(codes, meta, entropy=plain))
    n_flag = payload_len(tokens_to_bytes(codes, meta, entropy=flagged))
    # runs of mean length 4: a flag per frame plus a code per run beats a code per frame
    assert 8 * n_flag <= flagged.expected_bits(0, codes[0]) * 1.001 + 64
    assert flagged.expected_bits(0, codes[0]) < plain.expected_bits(0, codes[0])
    assert n_flag < n_plain
    auto = fit_tables([codes], model(sizes))
    assert auto.repeat[0] is not None  # "auto" picks the flag here


def test_unseen_codes_stay_encodable():
    sizes = [1024]
    rng = np.random.default_rng(3)
    train = [rng.integers(0, 10, size=(1, 1000))]  # only codes 0..9 seen
    tables = fit_tables(train, model(sizes), smoothing=0.5)
    codes = np.array([[1023, 512, 3, 1023, 0]])
    out, _ = tokens_from_bytes(tokens_to_bytes(codes, make_meta(sizes, 5), entropy=tables), tables)
    np.testing.assert_array_equal(out, codes)
    # an unseen code costs about log2(total / smoothing) bits, not more
    total = 1000 + 1024 * 0.5
    assert tables.expected_bits(0, np.array([1023])) <= math.log2(total / 0.5) + 1e-9


def test_stuck_codebook_is_capped():
    """A codebook that always gives one code: its probability is capped (0.95), so long files of
    it still cost a bounded minimum per code, and it round-trips."""
    from hasrd.io.entropy import MAX_PROB

    sizes = [64]
    tables = fit_tables([np.zeros((1, 5000), np.int64)], model(sizes), repeat=False)
    assert tables.probabilities(0).max() == MAX_PROB
    codes = np.zeros((1, 3000), np.int64)
    data = tokens_to_bytes(codes, make_meta(sizes, 3000), entropy=tables)
    np.testing.assert_array_equal(tokens_from_bytes(data, tables)[0], codes)
    assert 8 * payload_len(data) >= 3000 * -math.log2(MAX_PROB + 2 ** -20) - 128


# ---------------------------------------------------------------------------------------------
# tables: missing, mismatched, malformed


def test_missing_or_mismatched_tables(tmp_path, uniform_tables, skewed):
    codes = random_codes(np.random.default_rng(0), SIZES, 30)
    path = tmp_path / "a.hsrd"
    save_tokens(path, codes, make_meta(SIZES, 30), entropy=uniform_tables)
    with pytest.raises(TokenFileError, match="needs the entropy tables"):
        load_tokens(path)
    other = fit_tables([random_codes(np.random.default_rng(9), SIZES, 100)], model(SIZES))
    with pytest.raises(TokenFileError, match=f"tables {uniform_tables.digest[:8]}.*given are {other.digest}"):
        load_tokens(path, other)
    with pytest.raises(TokenFileError, match="cover codebooks"):
        # tables of other codebook sizes, forged to carry the file's digest
        wrong = skewed[2]
        wrong._digest = uniform_tables.digest
        try:
            load_tokens(path, wrong)
        finally:
            wrong._digest = None
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(TokenFileError, match="no entropy tables"):
        load_tokens(path, tmp_path / "empty_model")


def test_writer_refuses_other_models_tables(uniform_tables):
    codes = random_codes(np.random.default_rng(0), SIZES, 10)
    with pytest.raises(TokenFileError, match="fitted for model"):
        tokens_to_bytes(codes, make_meta(SIZES, 10, fingerprint="fedcba9876543210"), entropy=uniform_tables)
    with pytest.raises(TokenFileError, match="cover codebooks"):
        tokens_to_bytes(codes[:1], make_meta([4096], 10), entropy=uniform_tables)


def test_tables_file_round_trip_and_validation(tmp_path, skewed):
    tables = skewed[2]
    path = tables.save(tmp_path / "t.json")
    again = EntropyTables.load(path)
    assert again.digest == tables.digest and again.repeat == tables.repeat
    good = json.loads(path.read_text())

    def broken(change):
        obj = json.loads(json.dumps(good))
        change(obj)
        (tmp_path / "bad.json").write_text(json.dumps(obj))
        with pytest.raises(TokenFileError, match="bad.json"):
            EntropyTables.load(tmp_path / "bad.json")

    broken(lambda o: o.update(format="other"))
    broken(lambda o: o.update(format_version=99))
    broken(lambda o: o["tables"][0]["counts"].pop())
    broken(lambda o: o["tables"][1]["counts"].__setitem__(0, -1))
    broken(lambda o: o["tables"][1]["counts"].__setitem__(0, True))
    broken(lambda o: o["tables"][0].update(repeat=[5, 2]))
    broken(lambda o: o.update(smoothing=0))
    broken(lambda o: o["tables"][2]["counts"].__setitem__(3, 12345))  # digest no longer matches
    broken(lambda o: o.update(codebook_sizes=[1]))
    (tmp_path / "bad.json").write_bytes(b"\xff{not json")
    with pytest.raises(TokenFileError, match="not valid JSON"):
        EntropyTables.load(tmp_path / "bad.json")


# ---------------------------------------------------------------------------------------------
# hostile input


def check_reader(data: bytes, tables, original: np.ndarray | None = None) -> bool:
    """Load or raise TokenFileError, nothing else; a file that loads holds coherent codes."""
    try:
        codes, meta = tokens_from_bytes(data, tables)
    except TokenFileError:
        return False
    assert codes.dtype == np.int64 and codes.shape == (meta["n_q"], meta["num_frames"])
    if codes.size:
        assert (codes.min(axis=1) >= 0).all()
        assert (codes.max(axis=1) < np.array(meta["codebook_sizes"])).all()
    if original is not None:
        np.testing.assert_array_equal(codes, original)
    return True


@pytest.fixture(scope="module")
def fuzz_bases(uniform_tables, skewed):
    sizes, dists, tables, _ = skewed
    rng = np.random.default_rng(5)
    bases = []
    for frames in (60, 1, 0):
        c = random_codes(rng, SIZES, frames)
        bases.append((tokens_to_bytes(c, make_meta(SIZES, frames), entropy=uniform_tables), uniform_tables, c))
    c = sample(rng, dists, 80, run_rows=(0,))
    bases.append((tokens_to_bytes(c, make_meta(sizes, 80), entropy=tables), tables, c))
    c = random_codes(rng, SIZES, 60)  # and a version 2 file
    bases.append((tokens_to_bytes(c, make_meta(SIZES, 60), entropy=uniform_tables, format_version=2), uniform_tables, c))
    return bases


def test_fuzz_mutations(fuzz_bases):
    """≥1000 seeded mutations of entropy-coded files: none may escape as another exception."""
    rng = np.random.default_rng(4321)
    cases = loaded = 0
    for i in range(1200):
        data, tables, codes = fuzz_bases[i % len(fuzz_bases)]
        base = bytearray(data)
        kind = i % 6
        if kind == 0:  # truncation
            assert not check_reader(bytes(base[: int(rng.integers(0, len(base)))]), tables)
        elif kind == 1:  # one flipped bit
            pos = int(rng.integers(0, len(base) * 8))
            base[pos // 8] ^= 1 << (pos % 8)
            assert not check_reader(bytes(base), tables)
        elif kind == 2:  # random bytes overwritten (a file that still loads is the original)
            for _ in range(int(rng.integers(1, 8))):
                base[int(rng.integers(0, len(base)))] = int(rng.integers(0, 256))
            loaded += check_reader(bytes(base), tables, codes if bytes(base) == data else None)
        elif kind == 3:  # garbage behind a version 2 or 3 prefix
            junk = rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
            check_reader(b"HSRD" + bytes([2 + i % 2]) + junk, tables)
        elif kind == 4:  # trailing bytes (whole words too)
            extra = rng.integers(0, 256, size=int(rng.choice([1, 3, 4, 8])), dtype=np.uint8).tobytes()
            assert not check_reader(bytes(base) + extra, tables)
        else:  # payload bytes changed, CRC recomputed: the coding checks catch every change
            start, end = header_end(data), len(base) - 4
            if end > start:
                pos = int(rng.integers(start, end))
                base[pos] = (base[pos] + int(rng.integers(1, 256))) % 256
            base[-4:] = struct.pack("<I", zlib.crc32(bytes(base[:-4])))
            changed = bytes(base) != data
            assert check_reader(bytes(base), tables, codes) is not changed
        cases += 1
    assert cases >= 1000 and loaded >= 0


def test_fuzz_header_fields(fuzz_bases):
    """Version 2 header values changed (CRC recomputed): refused or coherent, never another exception."""
    data, tables, codes = fuzz_bases[-1]
    assert data[4] == 2
    h = struct.unpack("<H", data[5:7])[0]
    header = json.loads(data[7:7 + h])
    changes = [{"nf": header["nf"] + 1, "n": header["n"] + 320}, {"nq": 3}, {"nq": 5, "k": [1024] * 5},
               {"cc": 0}, {"cc": -1}, {"cc": 2 ** 40}, {"et": "0" * 16}, {"et": "xyz"}, {"pc": "huffman"},
               {"pc": None}, {"et": None}, {"cc": None}, {"k": 512}, {"nf": 0, "n": 0}]
    for change in changes:
        obj = {**header, **change}
        obj = {k: v for k, v in obj.items() if v is not None}
        raw = json.dumps(obj, separators=(",", ":")).encode()
        body = struct.pack("<4sBH", b"HSRD", 2, len(raw)) + raw + data[7 + h:-4]
        assert not check_reader(body + struct.pack("<I", zlib.crc32(body)), tables), change


def test_fuzz_hypothesis(fuzz_bases):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    data, tables, _ = fuzz_bases[3]

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(st.binary(max_size=400), st.integers(0, len(data)), st.booleans(), st.booleans())
    def run(blob, pos, splice, fix_crc):
        out = data[:pos] + blob + data[pos + len(blob):] if splice else blob
        if fix_crc and len(out) > 4:
            out = out[:-4] + struct.pack("<I", zlib.crc32(out[:-4]))
        check_reader(out, tables)

    run()


@pytest.mark.parametrize("frames", [2 ** 32, 2 ** 24, 10 ** 6])
def test_huge_declared_size_refused_before_allocating(skewed, frames):
    """A header declaring many frames behind a tiny payload is refused with under 1 MiB allocated,
    even under the most compressible tables (a fitted repeat flag)."""
    sizes, _, tables, _ = skewed
    tables._model(0)  # build the coder models before measuring
    for i in range(len(sizes)):
        tables._model(i)
    header = {"c": "hasrd", "fp": FP, "sr": 16000, "hop": 320, "fr": 50, "nq": 4, "k": sizes, "nf": frames,
              "n": frames * 320, "osr": 16000, "ch": 1, "v": "0.1.0", "pc": "range1", "et": tables.digest, "cc": 0}
    raw = json.dumps(header, separators=(",", ":")).encode()
    body = struct.pack("<4sBH", b"HSRD", 2, len(raw)) + raw + bytes(64)
    data = body + struct.pack("<I", zlib.crc32(body))
    tracemalloc.start()
    try:
        with pytest.raises(TokenFileError, match="need at least"):
            tokens_from_bytes(data, tables)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_bad_version_2_headers(uniform_tables):
    base = {"c": "hasrd", "fp": FP, "sr": 16000, "hop": 320, "fr": 50, "nq": 1, "k": 1024, "nf": 2, "n": 600,
            "osr": 16000, "ch": 1, "v": "0.1.0"}
    for extra, match in [({}, "payload_coding"), ({"pc": "range1"}, "entropy_table"),
                         ({"pc": "range1", "et": uniform_tables.digest}, "codes_crc"),
                         ({"pc": "zip", "et": uniform_tables.digest, "cc": 1}, "payload coding")]:
        raw = json.dumps({**base, **extra}, separators=(",", ":")).encode()
        body = struct.pack("<4sBH", b"HSRD", 2, len(raw)) + raw + bytes(4)
        with pytest.raises(TokenFileError, match=match):
            tokens_from_bytes(body + struct.pack("<I", zlib.crc32(body)), uniform_tables)
    # odd payload sizes are refused by the size check
    raw = json.dumps({**base, "pc": "range1", "et": uniform_tables.digest, "cc": 1}, separators=(",", ":")).encode()
    body = struct.pack("<4sBH", b"HSRD", 2, len(raw)) + raw + bytes(5)
    with pytest.raises(TokenFileError, match="32-bit words"):
        tokens_from_bytes(body + struct.pack("<I", zlib.crc32(body)), uniform_tables)
    with pytest.raises(TokenFileError, match="newer"):
        tokens_from_bytes(b"HSRD\x04\x00\x00" + bytes(4))


# ---------------------------------------------------------------------------------------------
# the CLI: entropy-fit, encode --entropy, decode, info


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    import soundfile as sf

    from tests.conftest import speechlike, tiny_codec

    root = tmp_path_factory.mktemp("entropy_cli")
    tiny_codec("hasrd").save_pretrained(root / "model")
    (root / "speech" / "spk").mkdir(parents=True)
    for s in range(3):
        sf.write(root / "speech" / "spk" / f"u{s}.wav", speechlike(0.6 + 0.2 * s, seed=20 + s)[0, 0].numpy(), 16000)
    return root


def cli(capsys, *args):
    from hasrd.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hasrd: error: "), err
    assert all(w in lines[0] for w in words), err


def test_cli_entropy_flow(cli_setup, capsys):
    root = cli_setup
    model, speech = root / "model", root / "speech"
    rc, _, err = cli(capsys, "encode", speech, "-o", root / "plain", "--model", model)
    assert rc == 0 and err == ""
    rc, _, err = cli(capsys, "encode", speech, "-o", root / "coded", "--model", model, "--entropy")
    assert rc == 2
    one_error(err, "--entropy", "no entropy tables")
    assert not (root / "coded").exists()

    rc, out, err = cli(capsys, "entropy-fit", speech, "--model", model, "-o", model)
    assert rc == 0 and err == "" and "fitted entropy tables" in out
    tables = EntropyTables.load(model)
    # fitting on the token files of the same audio gives the same tables
    rc, _, err = cli(capsys, "entropy-fit", root / "plain", "--model", model, "-o", root / "from_tokens.json")
    assert rc == 0 and EntropyTables.load(root / "from_tokens.json").digest == tables.digest
    rc, _, err = cli(capsys, "entropy-fit", speech, "--model", model, "-o", model)
    assert rc == 2
    one_error(err, "exists", "--force")

    rc, _, err = cli(capsys, "encode", speech, "-o", root / "coded", "--model", model, "--entropy")
    assert rc == 0 and err == ""
    for f in sorted((root / "plain").rglob("*.hsrd")):
        coded = root / "coded" / f.relative_to(root / "plain")
        assert coded.read_bytes()[4] == 3 and coded.read_bytes()[5] & 1  # version 3, entropy-coded
        np.testing.assert_array_equal(load_tokens(coded, model)[0], load_tokens(f)[0])

    # decode reads both kinds; the same codes give the same audio
    assert cli(capsys, "decode", root / "plain", "-o", root / "wav_plain", "--model", model)[0] == 0
    assert cli(capsys, "decode", root / "coded", "-o", root / "wav_coded", "--model", model)[0] == 0
    for f in sorted((root / "wav_plain").rglob("*.wav")):
        assert (root / "wav_coded" / f.relative_to(root / "wav_plain")).read_bytes() == f.read_bytes()

    # info: coding, nominal and actual bitrate
    one = root / "coded" / "spk" / "u2.hsrd"
    rc, out, _ = cli(capsys, "info", one)
    report = json.loads(out)
    assert rc == 0 and report["format_version"] == 3 and report["payload_coding"] == "range1"
    assert report["codes_verified"] is False and report["entropy_table"] == tables.digest[:8]
    assert report["nominal_bitrate"] == 1200.0
    assert report["actual_bitrate"] == pytest.approx(report["bytes"] * 8 / report["duration"])
    assert report["payload_bitrate"] == pytest.approx(report["payload_bytes"] * 8 / report["duration"])
    rc, out, _ = cli(capsys, "info", one, "--model", model)
    assert rc == 0 and json.loads(out)["codes_verified"] is True
    rc, out, _ = cli(capsys, "info", root / "plain" / "spk" / "u2.hsrd")
    assert json.loads(out)["payload_coding"] == "bits" and json.loads(out)["codes_verified"] is True

    # a model folder without the tables cannot decode an entropy-coded file: one line, exit 1
    import shutil

    bare = root / "bare_model"
    shutil.copytree(model, bare)
    (bare / TABLES_NAME).unlink()
    rc, _, err = cli(capsys, "decode", one, "-o", root / "x.wav", "--model", bare)
    assert rc == 1 and not (root / "x.wav").exists()
    one_error(err, str(one), "entropy")


def test_cli_entropy_fit_refuses_other_models_tokens(cli_setup, capsys, tmp_path):
    import torch

    from hasrd.codecs import build_codec
    from tests.conftest import tiny_config

    torch.manual_seed(99)
    build_codec(tiny_config("hasrd")["model"]).save_pretrained(tmp_path / "other")
    root = cli_setup
    assert cli(capsys, "encode", root / "speech", "-o", tmp_path / "tok", "--model", tmp_path / "other")[0] == 0
    rc, out, err = cli(capsys, "entropy-fit", tmp_path / "tok", "--model", root / "model", "-o", tmp_path / "t.json")
    assert rc == 1 and "no tables written" in out
    assert all(line.startswith("hasrd: error: ") and "another model" in line for line in err.strip().splitlines())
    assert not (tmp_path / "t.json").exists()
