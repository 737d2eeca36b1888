"""The hasrd CLI, called in-process (``hasrd.cli.main``) for speed."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hasrd.cli import main
from hasrd.io import load_tokens
from hasrd.io.audio import load_audio
from hasrd.io.tokenfile import bits_for

from .conftest import ROOT, tone
from .test_cli_subprocess import corrupt

CORPUS_FILES = ["a.wav", "spk1/b.flac", "spk1/c.ogg", "spk2/deep/d.wav", "spk2/silent.wav"]


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error(err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hasrd: error: "), err
    for name in names:
        assert str(name) in lines[0], (name, err)
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# single files


def test_file_round_trip(tmp_path, capsys, model_dir, cli_codec, corpus):
    src = corpus / "a.wav"  # 44.1 kHz stereo
    tok = tmp_path / "a.hsrd"
    rc, _, err = cli(capsys, "encode", src, "-o", tok, "--model", model_dir, "--n-q", 2)
    assert rc == 0 and err == ""
    codes, meta = load_tokens(tok)
    info = sf.info(str(src))
    assert codes.shape == (2, meta["num_frames"]) and codes.dtype == np.int64
    assert meta["fingerprint"] == cli_codec.fingerprint() and meta["codec"] == cli_codec.codec_name
    assert meta["orig_sample_rate"] == 44100 and meta["channels"] == 2 and meta["length"] == info.frames
    assert meta["num_frames"] == math.ceil(info.frames * cli_codec.sample_rate / 44100 / cli_codec.hop_length)
    assert meta["sample_rate"] == cli_codec.sample_rate

    # the codes are the codec's own, of the audio as load_audio reads it
    audio, _ = load_audio(src, cli_codec.sample_rate)
    with torch.inference_mode():
        expect = cli_codec.encode(torch.from_numpy(audio)[None], 2)[0].numpy()
    np.testing.assert_array_equal(codes, expect)

    # back to the original rate and length, or to another rate
    wav = tmp_path / "a.wav"
    rc, _, err = cli(capsys, "decode", tok, "-o", wav, "--model", model_dir)
    assert rc == 0 and err == ""
    out = sf.info(str(wav))
    assert (out.samplerate, out.frames, out.channels) == (44100, info.frames, 1)
    with torch.inference_mode():
        ref = cli_codec.decode(torch.from_numpy(codes)[None])[0, 0].numpy()
    got16 = tmp_path / "a16.flac"
    rc, _, _ = cli(capsys, "decode", tok, "-o", got16, "--model", model_dir, "--sample-rate", 16000)
    assert rc == 0
    y, sr = sf.read(str(got16), dtype="float32")
    assert sr == 16000 and len(y) == round(info.frames * 16000 / 44100)
    # at the model's rate, the file is the codec's decode trimmed (16-bit quantised)
    np.testing.assert_allclose(y, np.clip(ref[: len(y)], -1, 1), atol=1.0 / 2 ** 14)


def test_bitrate_option_picks_n_q(tmp_path, capsys, model_dir, cli_codec, corpus):
    bps = cli_codec.bitrate(3) + 1  # just above n_q=3
    rc, _, _ = cli(capsys, "encode", corpus / "spk1" / "b.flac", "-o", tmp_path / "b.hsrd", "--model", model_dir, "--bitrate", bps)
    assert rc == 0
    assert load_tokens(tmp_path / "b.hsrd")[1]["n_q"] == cli_codec.n_q_for_bitrate(bps) == 3


def test_output_into_folder(tmp_path, capsys, model_dir, corpus):
    """One file with -o naming a folder (existing, or a name without a suffix)."""
    rc, _, _ = cli(capsys, "encode", corpus / "spk1" / "b.flac", "-o", tmp_path / "toks", "--model", model_dir)
    assert rc == 0 and (tmp_path / "toks" / "b.hsrd").is_file()
    rc, _, _ = cli(capsys, "decode", tmp_path / "toks" / "b.hsrd", "-o", tmp_path / "toks", "--model", model_dir)
    assert rc == 0 and (tmp_path / "toks" / "b.wav").is_file()


def test_chunked_encoding(tmp_path, capsys, model_dir, cli_codec):
    """A long file goes through in chunks of whole frames, each encoded on its own."""
    sr = cli_codec.sample_rate
    src = tmp_path / "long.wav"
    x = tone(2.3, sr)[:, 0]
    sf.write(src, x, sr, subtype="FLOAT")
    tok = tmp_path / "long.hsrd"
    rc, _, err = cli(capsys, "encode", src, "-o", tok, "--model", model_dir, "--chunk-seconds", 1)
    assert rc == 0, err
    codes, meta = load_tokens(tok)
    chunk = meta["chunk_frames"]
    assert chunk == sr // cli_codec.hop_length  # 1 s of frames
    assert meta["num_frames"] == math.ceil(len(x) / cli_codec.hop_length)
    with torch.inference_mode():
        pieces = [
            cli_codec.encode(torch.from_numpy(x[i:i + chunk * cli_codec.hop_length]).view(1, 1, -1))[0].numpy()
            for i in range(0, len(x), chunk * cli_codec.hop_length)
        ]
    np.testing.assert_array_equal(codes, np.concatenate(pieces, axis=1))
    rc, _, _ = cli(capsys, "decode", tok, "-o", tmp_path / "long_out.wav", "--model", model_dir)
    assert rc == 0 and sf.info(str(tmp_path / "long_out.wav")).frames == len(x)
    # chunked decode through the streaming resampler: exact length, no gap at chunk joins
    rc, _, _ = cli(capsys, "decode", tok, "-o", tmp_path / "long_22k.wav", "--model", model_dir, "--sample-rate", 22050)
    y, sr = sf.read(str(tmp_path / "long_22k.wav"), dtype="float32")
    assert rc == 0 and sr == 22050 and len(y) == round(len(x) * 22050 / 16000)
    import soxr

    y16, _ = sf.read(str(tmp_path / "long_out.wav"), dtype="float32")
    ref = soxr.resample(y16, 16000, 22050, quality="HQ")[: len(y)]
    np.testing.assert_allclose(y, ref, atol=2e-3)


def test_silence_and_zero_length(tmp_path, capsys, model_dir, corpus, bad_audio):
    rc, _, err = cli(capsys, "encode", corpus / "spk2" / "silent.wav", "-o", tmp_path / "s.hsrd", "--model", model_dir)
    assert rc == 0 and err == ""
    assert load_tokens(tmp_path / "s.hsrd")[1]["num_frames"] == 10
    # zero-length audio is valid: 0 frames, and decodes to 0 samples
    rc, _, err = cli(capsys, "encode", bad_audio["zero"], "-o", tmp_path / "z.hsrd", "--model", model_dir)
    assert rc == 0 and err == ""
    codes, meta = load_tokens(tmp_path / "z.hsrd")
    assert codes.shape == (4, 0) and meta["length"] == 0
    rc, _, _ = cli(capsys, "decode", tmp_path / "z.hsrd", "-o", tmp_path / "z.wav", "--model", model_dir)
    assert rc == 0 and sf.info(str(tmp_path / "z.wav")).frames == 0


def test_info(tmp_path, capsys, model_dir, cli_codec, corpus):
    tok = tmp_path / "a.hsrd"
    cli(capsys, "encode", corpus / "a.wav", "-o", tok, "--model", model_dir, "--n-q", 3)
    rc, out, err = cli(capsys, "info", tok)
    assert rc == 0 and err == ""
    report = json.loads(out)
    size = tok.stat().st_size
    assert report["bytes"] == size and report["n_q"] == 3
    assert report["nominal_bitrate"] == pytest.approx(cli_codec.bitrate(3))
    assert report["actual_bitrate"] == pytest.approx(size * 8 / report["duration"])
    assert report["fingerprint"] == cli_codec.fingerprint()
    assert report["header_bytes"] <= 256 and report["format_version"] == 3
    assert report["builtin_model"] is None  # the tiny test model: its facts are in the file's extension
    rc, out, err = cli(capsys, "info", tok, "--model", tmp_path / "no_such_model")
    assert rc == 2 and out == "" and "no_such_model" in err and len(err.strip().splitlines()) == 1
    # reading a header needs no torch (a fresh interpreter: this one has it loaded already)
    code = ("import sys; from hasrd.cli import main; rc = main(['info', sys.argv[1]]); "
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]")
    proc = subprocess.run([sys.executable, "-c", code, str(tok)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_size_bound(tmp_path, capsys, model_dir, cli_codec, corpus):
    """bytes <= nominal bitrate x duration / 8 + header (+ one frame for the last partial one)."""
    for n_q in (1, 4):
        tok = tmp_path / f"a{n_q}.hsrd"
        cli(capsys, "encode", corpus / "a.wav", "-o", tok, "--model", model_dir, "--n-q", n_q)
        report = json.loads(cli(capsys, "info", tok)[1])
        header = report["header_bytes"] + report["overhead_bytes"]  # every byte but the payload
        assert report["bytes"] == header + report["payload_bytes"]
        covered = report["num_frames"] / report["frame_rate"]
        assert report["bytes"] <= math.ceil(report["nominal_bitrate"] * covered / 8) + header
        one_frame = math.ceil(sum(bits_for(k) for k in report["codebook_sizes"]) / 8)
        assert report["bytes"] <= report["nominal_bitrate"] * report["duration"] / 8 + header + one_frame
        assert report["nominal_bitrate"] == cli_codec.bitrate(n_q)


# ---------------------------------------------------------------------------------------------
# folders, globs, batches


def test_tree_round_trip(tmp_path, capsys, model_dir, corpus):
    toks = tmp_path / "toks"
    rc, out, err = cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir, "--n-q", 2)
    assert rc == 0 and err == "", err
    expect = sorted(str(Path(f).with_suffix(".hsrd").as_posix()) for f in CORPUS_FILES)
    got = sorted(p.relative_to(toks).as_posix() for p in toks.rglob("*.hsrd"))
    assert got == expect
    manifest = [json.loads(line) for line in (toks / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in manifest) == expect  # each file exactly once
    for rec in manifest:
        assert rec["bytes"] == (toks / rec["path"]).stat().st_size
        assert rec["n_q"] == 2 and rec["frames"] == load_tokens(toks / rec["path"])[1]["num_frames"]
        assert rec["duration"] == pytest.approx(sf.info(rec["source"]).duration, abs=1e-5)
    assert not list(toks.glob("manifest.jsonl.part*"))

    wavs = tmp_path / "wavs"
    rc, _, err = cli(capsys, "decode", toks, "-o", wavs, "--model", model_dir)
    assert rc == 0 and err == ""
    for name in CORPUS_FILES:
        src = sf.info(str(corpus / name))
        dec = sf.info(str(wavs / Path(name).with_suffix(".wav")))
        assert (dec.samplerate, dec.frames) == (src.samplerate, src.frames), name


def test_glob_input(tmp_path, capsys, model_dir, corpus):
    pattern = str(corpus / "spk*" / "**" / "*.wav")  # quoted: hasrd expands it
    rc, _, err = cli(capsys, "encode", pattern, "-o", tmp_path / "g", "--model", model_dir, "--n-q", 1)
    assert rc == 0, err
    got = sorted(p.relative_to(tmp_path / "g").as_posix() for p in (tmp_path / "g").rglob("*.hsrd"))
    assert got == ["spk2/deep/d.hsrd", "spk2/silent.hsrd"]
    rc, _, err = cli(capsys, "encode", str(corpus / "nothing*.wav"), "-o", tmp_path / "g2", "--model", model_dir)
    assert rc == 1
    assert_one_error(err, "nothing*.wav", "no files match")


def test_resume_and_force(tmp_path, capsys, model_dir, corpus):
    toks = tmp_path / "toks"
    assert cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir)[0] == 0
    first = {p: p.stat().st_mtime_ns for p in toks.rglob("*.hsrd")}
    # an interrupted job: one output missing, one damaged, a stale part, the manifest gone
    (toks / "a.hsrd").unlink()
    damaged = toks / "spk1" / "b.hsrd"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    (toks / "manifest.jsonl").unlink()
    (toks / "manifest.jsonl.part7").write_text('{"path": "ghost.hsrd"}\n')
    rc, out, err = cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir)
    assert rc == 0 and err == ""
    assert "encoded 2 file(s), skipped 3 already done" in out
    load_tokens(damaged)  # redone, loads fine
    for p, mtime in first.items():
        if p.name not in ("a.hsrd", "b.hsrd"):
            assert p.stat().st_mtime_ns == mtime  # left alone
    manifest = [json.loads(line) for line in (toks / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in manifest) == sorted(str(Path(f).with_suffix(".hsrd")) for f in CORPUS_FILES)
    assert not list(toks.glob("manifest.jsonl.part*"))
    # other settings on top of finished outputs: refused unless --force
    rc, _, err = cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir, "--n-q", 1)
    assert rc == 1 and "use --force" in err and "Traceback" not in err
    rc, out, err = cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir, "--n-q", 1, "--force")
    assert rc == 0 and "encoded 5 file(s)" in out
    assert all(load_tokens(p)[1]["n_q"] == 1 for p in toks.rglob("*.hsrd"))


def test_batch_goes_on_after_a_bad_file(tmp_path, capsys, model_dir, corpus, bad_audio):
    rc, out, err = cli(
        capsys, "encode", corpus / "a.wav", bad_audio["text"], tmp_path / "missing.wav", corpus / "spk1" / "b.flac",
        "-o", tmp_path / "out", "--model", model_dir,
    )
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("hasrd: error: ") for line in lines)
    assert "text.wav" in lines[0] and "missing.wav" in lines[1]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.hsrd")) == ["a.hsrd", "b.hsrd"]
    assert "encoded 2 file(s), 2 failed" in out


def test_name_collision(tmp_path, capsys, model_dir, corpus):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(corpus / "a.wav", src / "x.wav")
    shutil.copy(corpus / "spk1" / "b.flac", src / "x.flac")
    rc, _, err = cli(capsys, "encode", src, "-o", tmp_path / "out", "--model", model_dir)
    assert rc == 1
    assert_one_error(err, "x.wav", "also the output of")
    assert [p.name for p in (tmp_path / "out").glob("*.hsrd")] == ["x.hsrd"]


# ---------------------------------------------------------------------------------------------
# model identity


def test_model_mismatch(tmp_path, capsys, model_dir, other_model_dir, corpus):
    tok = tmp_path / "a.hsrd"
    cli(capsys, "encode", corpus / "a.wav", "-o", tok, "--model", model_dir)
    rc, _, err = cli(capsys, "decode", tok, "-o", tmp_path / "a.wav", "--model", other_model_dir)
    assert rc == 1
    assert_one_error(err, "a.hsrd", "another model", "--ignore-model-mismatch")
    assert not (tmp_path / "a.wav").exists()
    rc, _, err = cli(capsys, "decode", tok, "-o", tmp_path / "a.wav", "--model", other_model_dir, "--ignore-model-mismatch")
    assert rc == 0 and err == "" and (tmp_path / "a.wav").is_file()
    # codebooks of another size: the codes index other entries, so even a forced decode is refused
    from hasrd.codecs import build_codec
    from tests.conftest import tiny_config

    cfg = tiny_config("hasrd")["model"]
    size = cfg["quantizer"]["codebook_size"]
    cfg["quantizer"]["codebook_size"] = size * 2
    build_codec(cfg).eval().save_pretrained(tmp_path / "bigger")
    rc, _, err = cli(capsys, "decode", tok, "-o", tmp_path / "b.wav", "--model", tmp_path / "bigger", "--ignore-model-mismatch")
    assert rc == 1 and not (tmp_path / "b.wav").exists()
    assert_one_error(err, "a.hsrd", f"{size} entries", f"has {size * 2}")


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "encode" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_usage_errors(tmp_path, capsys, model_dir, corpus):
    src = corpus / "a.wav"
    for args, needle in [
        (("--n-q", 99), "--n-q 99"),
        (("--n-q", 0), "--n-q 0"),
        (("--bitrate", 1), "--bitrate 1"),
        (("--chunk-seconds", 0), "--chunk-seconds"),
        (("--chunk-seconds", "nan"), "--chunk-seconds nan"),
        (("--chunk-seconds", "inf"), "--chunk-seconds inf"),
        (("--bitrate", "nan"), "--bitrate nan"),
        (("--bitrate", "-600"), "--bitrate -600"),
    ]:
        rc, _, err = cli(capsys, "encode", src, "-o", tmp_path / "x.hsrd", "--model", model_dir, *args)
        assert rc == 2
        assert_one_error(err, needle)
    rc, _, err = cli(capsys, "encode", src, "-o", tmp_path / "x.hsrd", "--model", tmp_path / "no_model")
    assert rc == 2
    assert_one_error(err, "no_model")
    rc, _, err = cli(capsys, "encode", corpus, "-o", tmp_path / "x.hsrd", "--model", model_dir)
    assert rc == 2
    assert_one_error(err, "x.hsrd", "folder")
    rc, _, err = cli(capsys, "decode", tmp_path / "t.hsrd", "-o", tmp_path / "x.mp3", "--model", model_dir)
    assert rc == 2
    assert_one_error(err, "x.mp3")
    with pytest.raises(SystemExit) as exc:  # argparse's own usage errors
        main(["encode", str(src), "-o", str(tmp_path / "x.hsrd"), "--n-q", "2", "--bitrate", "600"])
    assert exc.value.code == 2
    capsys.readouterr()
    rc, _, err = cli(capsys, "demo", "-o", tmp_path / "demo", "--model", model_dir, "--baselines", "codec2:3200,bogus:1")
    assert rc == 2  # refused before anything is encoded
    assert_one_error(err, "--baselines bogus:1")
    assert list(tmp_path.iterdir()) == []


def test_output_exists(tmp_path, capsys, model_dir, corpus):
    tok = tmp_path / "a.hsrd"
    tok.write_bytes(b"precious")
    rc, _, err = cli(capsys, "encode", corpus / "a.wav", "-o", tok, "--model", model_dir)
    assert rc == 1
    assert_one_error(err, "a.wav", "exists", "--force")
    assert tok.read_bytes() == b"precious"
    rc, _, _ = cli(capsys, "encode", corpus / "a.wav", "-o", tok, "--model", model_dir, "--force")
    assert rc == 0 and load_tokens(tok)
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"precious")
    rc, _, err = cli(capsys, "decode", tok, "-o", wav, "--model", model_dir)
    assert rc == 1 and wav.read_bytes() == b"precious"
    assert_one_error(err, "exists")


# ---------------------------------------------------------------------------------------------
# every bad input, in-process (the subprocess tests repeat the main ones for real)


@pytest.mark.parametrize("case, problem", [
    ("missing", "no such file"), ("empty", "empty file"), ("text", "not a readable audio file"),
    ("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("folder", "no input files"),
    ("fifo", "is a FIFO, not a regular file"),
])
def test_bad_audio_in_process(tmp_path, capsys, model_dir, bad_audio, case, problem):
    if case == "missing":
        src = tmp_path / "missing.wav"
    elif case == "fifo":
        src = tmp_path / "pipe.wav"
        os.mkfifo(src)  # reading it would block forever
    elif case == "folder":
        src = tmp_path / "emptydir"
        src.mkdir()
    else:
        src = bad_audio[case]
    out = tmp_path / ("out" if case == "folder" else "out.hsrd")
    rc, _, err = cli(capsys, "encode", src, "-o", out, "--model", model_dir)
    assert rc == 1
    assert_one_error(err, src.name, problem)
    assert not out.exists()  # not even an empty output folder


@pytest.mark.parametrize("kind, problem", [
    ("truncated", "truncated"), ("bitflip", "checksum"), ("garbage", "not a hasrd token file"),
    ("empty", "too short"), ("audio", "bad magic"),
])
def test_bad_tokens_in_process(tmp_path, capsys, model_dir, corpus, kind, problem):
    tok = tmp_path / "a.hsrd"
    assert cli(capsys, "encode", corpus / "a.wav", "-o", tok, "--model", model_dir)[0] == 0
    bad = tmp_path / f"{kind}.hsrd"
    if kind == "audio":
        bad.write_bytes((corpus / "a.wav").read_bytes())
    elif kind == "garbage":
        bad.write_bytes(b"\x00not a token file" * 20)
    else:
        bad.write_bytes(corrupt(kind, tok.read_bytes()))
    rc, _, err = cli(capsys, "decode", bad, "-o", tmp_path / "out.wav", "--model", model_dir)
    assert rc == 1
    assert_one_error(err, bad.name, problem)
    assert not (tmp_path / "out.wav").exists()
    rc, out, err = cli(capsys, "info", bad)
    assert rc == 1 and out == ""
    assert_one_error(err, bad.name, problem)


def test_two_encodes_into_one_folder_lose_no_record(tmp_path, capsys, model_dir, corpus):
    """A second encode into a folder keeps a running encode's manifest part (merged when that one
    ends, or by the next run once it is dead) and the records already in the manifest."""
    from hasrd.io.atomic import host_tag

    toks = tmp_path / "toks"
    assert cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir)[0] == 0
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # "another encode"
    try:
        part = toks / f"manifest.jsonl.part.{host_tag()}.{other.pid}"
        shutil.copy(toks / "a.hsrd", toks / "z.hsrd")
        part.write_text(json.dumps({"path": "z.hsrd", "source": "elsewhere"}) + "\n")
        rc, _, err = cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir)
        assert rc == 0, err
        assert part.exists()  # its writer still runs: not ours to merge
        paths = [json.loads(line)["path"] for line in (toks / "manifest.jsonl").read_text().splitlines()]
        assert len(paths) == len(CORPUS_FILES) and "z.hsrd" not in paths
    finally:
        other.kill()
        other.wait()
    assert cli(capsys, "encode", corpus, "-o", toks, "--model", model_dir)[0] == 0
    paths = [json.loads(line)["path"] for line in (toks / "manifest.jsonl").read_text().splitlines()]
    assert len(paths) == len(CORPUS_FILES) + 1 and "z.hsrd" in paths and not part.exists()  # writer gone: merged


def test_an_output_made_by_another_process_meanwhile_is_not_replaced(tmp_path, capsys, model_dir, corpus,
                                                                      monkeypatch):
    import hasrd.cli.encode as enc

    real = enc.encode_file
    out = tmp_path / "toks" / "a.hsrd"

    def racing(*args, **kw):  # another process writes the output while this one encodes
        result = real(*args, **kw)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"theirs")
        return result

    monkeypatch.setattr(enc, "encode_file", racing)
    rc, _, err = cli(capsys, "encode", corpus / "a.wav", "-o", out, "--model", model_dir)
    assert rc == 1 and out.read_bytes() == b"theirs"
    assert_one_error(err, "written by another process meanwhile")
    assert [p.name for p in out.parent.iterdir()] == ["a.hsrd"]  # no temp file left
    out.unlink()
    rc, _, err = cli(capsys, "encode", corpus / "a.wav", "-o", out, "--model", model_dir, "--force")
    assert rc == 0 and load_tokens(out)  # --force: replaced
