"""Bad input through a real ``python -m hasrd``: one stderr line, no traceback, no output file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf

from hasrd.io import load_tokens

from .conftest import run_cli


def assert_clean_failure(proc, *names: str, code: int = 1) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hasrd: error: "), lines[0]
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def good_tokens(tmp_path_factory, model_dir, corpus) -> Path:
    """A token file written by a real subprocess (the round trip of this module)."""
    root = tmp_path_factory.mktemp("sub_tokens")
    tok = root / "a.hsrd"
    proc = run_cli("encode", corpus / "a.wav", "-o", tok, "--model", model_dir, "--n-q", 2)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return tok


def test_subprocess_round_trip(tmp_path, good_tokens, model_dir, corpus):
    assert load_tokens(good_tokens)[1]["n_q"] == 2
    out = tmp_path / "a.wav"
    proc = run_cli("decode", good_tokens, "-o", out, "--model", model_dir)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    src = sf.info(str(corpus / "a.wav"))
    dec = sf.info(str(out))
    assert (dec.samplerate, dec.frames) == (src.samplerate, src.frames)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "nan"])
def test_bad_audio(tmp_path, model_dir, bad_audio, case):
    src = tmp_path / "missing.wav" if case == "missing" else bad_audio[case]
    out = tmp_path / "out.hsrd"
    proc = run_cli("encode", src, "-o", out, "--model", model_dir)
    problem = {"missing": "no such file", "empty": "empty", "text": "not a readable audio file",
               "nan": "NaN or infinite", "inf": "NaN or infinite"}[case]
    assert_clean_failure(proc, src.name, problem)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def corrupt(kind: str, good: bytes) -> bytes:
    if kind == "truncated":
        return good[: len(good) - 7]
    if kind == "bitflip":
        mid = len(good) // 2
        return good[:mid] + bytes([good[mid] ^ 0x10]) + good[mid + 1:]
    if kind == "garbage":
        return os.urandom(300)
    if kind == "empty":
        return b""
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "bitflip", "garbage"])
def test_bad_token_files(tmp_path, good_tokens, model_dir, kind):
    bad = tmp_path / f"{kind}.hsrd"
    bad.write_bytes(corrupt(kind, good_tokens.read_bytes()))
    out = tmp_path / "out.wav"
    proc = run_cli("decode", bad, "-o", out, "--model", model_dir)
    assert_clean_failure(proc, bad.name)
    assert not out.exists()


def test_other_model_refused(tmp_path, good_tokens, other_model_dir):
    out = tmp_path / "out.wav"
    proc = run_cli("decode", good_tokens, "-o", out, "--model", other_model_dir)
    assert_clean_failure(proc, good_tokens.name, "another model", "--ignore-model-mismatch")
    assert not out.exists()


def test_n_q_too_large(tmp_path, model_dir, corpus):
    out = tmp_path / "out.hsrd"
    proc = run_cli("encode", corpus / "a.wav", "-o", out, "--model", model_dir, "--n-q", 5)
    assert_clean_failure(proc, "--n-q 5", "1..4", code=2)
    assert not out.exists()


def test_output_exists_without_force(tmp_path, model_dir, corpus):
    out = tmp_path / "out.hsrd"
    out.write_bytes(b"keep me")
    proc = run_cli("encode", corpus / "a.wav", "-o", out, "--model", model_dir)
    assert_clean_failure(proc, "a.wav", "exists", "--force")
    assert out.read_bytes() == b"keep me"


def test_unwritable_output(tmp_path, model_dir, corpus):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    proc = run_cli("encode", corpus, "-o", blocker / "toks", "--model", model_dir)
    assert_clean_failure(proc, "blocker", "is a file")
    assert blocker.read_text().startswith("a file")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(tmp_path, model_dir, corpus):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = run_cli("encode", corpus / "a.wav", "-o", ro / "a.hsrd", "--model", model_dir)
        assert_clean_failure(proc, "ro")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("writer,reader", [("default", "hcodec-25hz"), ("hcodec-25hz", "default")])
def test_built_in_models_refuse_each_others_token_files(tmp_path, corpus, writer, reader):
    tok, out = tmp_path / "a.hsrd", tmp_path / "a.wav"
    proc = run_cli("encode", corpus / "a.wav", "-o", tok, "--model", writer)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run_cli("decode", tok, "-o", out, "--model", reader)
    line = assert_clean_failure(proc, "a.hsrd", f"built-in model {writer}", f"built-in model {reader}",
                                f"--model {writer}", "--ignore-model-mismatch")
    assert line.index(writer) < line.index(reader)  # "made by WRITER ..., not by READER"
    assert not out.exists()
    proc = run_cli("decode", tok, "-o", out, "--model", writer)
    assert proc.returncode == 0 and proc.stderr == "" and out.is_file(), proc.stderr


def test_decode_without_model_picks_the_built_in_model_each_file_names(tmp_path, corpus):
    toks, out = tmp_path / "toks", tmp_path / "wavs"
    for name in ("default", "hcodec-25hz"):
        proc = run_cli("encode", corpus / "a.wav", "-o", toks / f"{name}.hsrd", "--model", name)
        assert proc.returncode == 0, proc.stderr
    proc = run_cli("decode", toks, "-o", out)  # one call, no --model: each file names its model
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    for name in ("default", "hcodec-25hz"):
        want = tmp_path / f"{name}.wav"
        assert run_cli("decode", toks / f"{name}.hsrd", "-o", want, "--model", name).returncode == 0
        assert (out / f"{name}.wav").read_bytes() == want.read_bytes()


@pytest.mark.parametrize("model,n_q,allowed", [("default", 7, "1..6"), ("hcodec-25hz", 9, "1..8"), ("hcodec-25hz", 0, "1..8")])
def test_built_in_models_refuse_n_q_out_of_range(tmp_path, corpus, model, n_q, allowed):
    out = tmp_path / "out.hsrd"
    proc = run_cli("encode", corpus / "a.wav", "-o", out, "--model", model, "--n-q", n_q)
    assert_clean_failure(proc, f"--n-q {n_q}", allowed, code=2)
    assert not out.exists()


@pytest.mark.parametrize("model", ["default", "hcodec-25hz"])
def test_built_in_models_refuse_bad_audio(tmp_path, model):
    bad, out = tmp_path / "bad.wav", tmp_path / "bad.hsrd"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    proc = run_cli("encode", bad, "-o", out, "--model", model)
    assert_clean_failure(proc, "bad.wav")
    assert not out.exists()
