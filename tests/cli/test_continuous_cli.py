"""``hasrd encode --continuous`` / ``decode`` / ``info`` with .hsrl latent files, and the evaluator row."""
from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from hasrd.io.audio import load_audio
from hasrd.io.latentfile import load_latent

from .conftest import run_cli
from .test_cli import assert_one_error, cli


def _continuous(path, seed):
    from hasrd.codecs import build_codec
    from hasrd.config import load_config
    from tests.conftest import ROOT

    torch.manual_seed(seed)
    build_codec(load_config(ROOT / "codec_configs" / "debug" / "continuous_tiny.yaml")["model"]).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def cont_dir(tmp_path_factory):
    return _continuous(tmp_path_factory.mktemp("models") / "ctiny", 0)


@pytest.fixture(scope="module")
def other_cont_dir(tmp_path_factory):
    return _continuous(tmp_path_factory.mktemp("models") / "cother", 7)


@pytest.fixture(scope="module")
def cont_codec(cont_dir):
    from hasrd.codecs import load_codec

    return load_codec(cont_dir)


def test_round_trip_keeps_length_and_rate(tmp_path, capsys, cont_dir, cont_codec, corpus):
    src = corpus / "a.wav"  # 44.1 kHz stereo
    lat = tmp_path / "a.hsrl"
    rc, _, err = cli(capsys, "encode", src, "-o", lat, "--model", cont_dir, "--continuous")
    assert rc == 0 and err == ""
    z, meta = load_latent(lat)
    info = sf.info(str(src))
    frames = math.ceil(info.frames * 16000 / 44100 / cont_codec.hop_length)
    assert z.dtype == np.float16 and z.shape == (cont_codec.latent_dim, frames)
    assert meta["codec"] == "continuous" and meta["fingerprint"] == cont_codec.fingerprint()
    assert (meta["orig_sample_rate"], meta["channels"], meta["length"]) == (44100, 2, info.frames)
    assert (meta["sample_rate"], meta["frame_rate"], meta["num_frames"]) == (16000, 50.0, frames)
    assert meta["version"] and meta["chunk_frames"] >= 1
    # the stored latent is the codec's own, of the audio as load_audio reads it, rounded to float16
    audio, _ = load_audio(src, 16000)
    expect = cont_codec.encode_to_latent(torch.from_numpy(audio)[None])[0].numpy()
    np.testing.assert_allclose(z.astype(np.float32), expect, atol=1e-3)

    wav = tmp_path / "a.wav"
    rc, _, err = cli(capsys, "decode", lat, "-o", wav, "--model", cont_dir)
    assert rc == 0 and err == ""
    out = sf.info(str(wav))
    assert (out.samplerate, out.frames, out.channels) == (44100, info.frames, 1)
    # at the model's rate the file is decode_latent of the float16 latent, trimmed (16-bit PCM)
    rc, _, _ = cli(capsys, "decode", lat, "-o", tmp_path / "a16.wav", "--model", cont_dir, "--sample-rate", 16000)
    assert rc == 0
    y, sr = sf.read(str(tmp_path / "a16.wav"), dtype="float32")
    ref = cont_codec.decode_latent(torch.from_numpy(z.astype(np.float32))[None])[0, 0].numpy()
    assert sr == 16000 and len(y) == round(info.frames * 16000 / 44100)
    np.testing.assert_allclose(y, np.clip(ref[: len(y)], -1, 1), atol=1.0 / 2 ** 14)

    rc, out_text, _ = cli(capsys, "info", lat)
    report = json.loads(out_text)
    assert rc == 0 and report["nominal_bitrate"] == 50 * cont_codec.latent_dim * 16
    assert report["actual_bitrate"] == pytest.approx(lat.stat().st_size * 8 / (info.frames / 44100))


def test_folder_round_trip(tmp_path, capsys, cont_dir, corpus):
    lats, wavs = tmp_path / "lat", tmp_path / "wav"
    rc, out, err = cli(capsys, "encode", corpus, "-o", lats, "--model", cont_dir, "--continuous")
    assert rc == 0 and err == "" and "encoded 5 file(s)" in out
    manifest = [json.loads(line) for line in (lats / "manifest.jsonl").read_text().splitlines()]
    assert [r["path"] for r in manifest] == ["a.hsrl", "spk1/b.hsrl", "spk1/c.hsrl", "spk2/deep/d.hsrl", "spk2/silent.hsrl"]
    assert all(r["latent_dim"] == 8 and "n_q" not in r for r in manifest)
    # a stray token file in the folder is not picked up by a continuous model
    (lats / "spk1" / "stray.hsrd").write_bytes(b"HSRD")
    rc, out, err = cli(capsys, "decode", lats, "-o", wavs, "--model", cont_dir)
    assert rc == 0 and err == "" and "decoded 5 file(s)" in out
    for rec in manifest:
        src = next(corpus.glob(rec["path"][:-5] + ".*"))
        assert sf.info(str(wavs / rec["path"].replace(".hsrl", ".wav"))).frames == sf.info(str(src)).frames
    # running again skips what is done
    rc, out, _ = cli(capsys, "encode", corpus, "-o", lats, "--model", cont_dir, "--continuous")
    assert rc == 0 and "skipped 5 already done" in out


def test_model_mismatch_is_refused(tmp_path, capsys, cont_dir, other_cont_dir, corpus):
    lat = tmp_path / "a.hsrl"
    assert cli(capsys, "encode", corpus / "a.wav", "-o", lat, "--model", cont_dir, "--continuous")[0] == 0
    rc, _, err = cli(capsys, "decode", lat, "-o", tmp_path / "a.wav", "--model", other_cont_dir)
    assert rc == 1
    assert_one_error(err, "a.hsrl", "another model", "--ignore-model-mismatch")
    assert not (tmp_path / "a.wav").exists()
    rc, _, err = cli(capsys, "decode", lat, "-o", tmp_path / "a.wav", "--model", other_cont_dir, "--ignore-model-mismatch")
    assert rc == 0 and err == "" and (tmp_path / "a.wav").is_file()


def test_kind_mismatches_are_one_line_errors(tmp_path, capsys, cont_dir, model_dir, corpus):
    src = corpus / "a.wav"
    # encode: --continuous must match the model
    rc, _, err = cli(capsys, "encode", src, "-o", tmp_path / "x.hsrl", "--model", model_dir, "--continuous")
    assert rc == 2
    assert_one_error(err, "--continuous", "token codec")
    rc, _, err = cli(capsys, "encode", src, "-o", tmp_path / "x.hsrd", "--model", cont_dir)
    assert rc == 2
    assert_one_error(err, "continuous codec", "--continuous")
    rc, _, err = cli(capsys, "encode", src, "-o", tmp_path / "x.hsrl", "--model", cont_dir, "--continuous", "--n-q", 2)
    assert rc == 2
    assert_one_error(err, "--n-q", "no codebooks")
    rc, _, err = cli(capsys, "encode", src, "-o", tmp_path / "x.hsrl", "--model", cont_dir)
    assert rc == 2
    assert_one_error(err, "--continuous")
    assert list(tmp_path.iterdir()) == []
    # decode: a latent file needs the continuous model, a token file the token model (by content, not name)
    lat, tok = tmp_path / "a.hsrl", tmp_path / "a.hsrd"
    assert cli(capsys, "encode", src, "-o", lat, "--model", cont_dir, "--continuous")[0] == 0
    assert cli(capsys, "encode", src, "-o", tok, "--model", model_dir)[0] == 0
    rc, _, err = cli(capsys, "decode", lat, "-o", tmp_path / "o1.wav", "--model", model_dir, "--ignore-model-mismatch")
    assert rc == 1
    assert_one_error(err, "a.hsrl", "latent file", "--model")
    rc, _, err = cli(capsys, "decode", tok, "-o", tmp_path / "o2.wav", "--model", cont_dir)
    assert rc == 1
    assert_one_error(err, "a.hsrd", "token file", "--model")
    shutil.copy(lat, tmp_path / "renamed.hsrd")
    rc, _, err = cli(capsys, "decode", tmp_path / "renamed.hsrd", "-o", tmp_path / "o3.wav", "--model", cont_dir)
    assert rc == 0 and err == ""
    # the demo compares codebook counts: not for a continuous model
    rc, _, err = cli(capsys, "demo", "-o", tmp_path / "demo", "--model", cont_dir)
    assert rc == 2
    assert_one_error(err, "continuous codec")


@pytest.mark.parametrize("kind, problem", [
    ("truncated", "truncated"), ("bitflip", "checksum"), ("garbage", "not a hasrd latent file"),
    ("empty", "too short"), ("weights", "no hasrd-latent metadata"),
])
def test_malformed_latent_file_is_one_line(tmp_path, capsys, cont_dir, corpus, kind, problem):
    lat = tmp_path / "a.hsrl"
    assert cli(capsys, "encode", corpus / "a.wav", "-o", lat, "--model", cont_dir, "--continuous")[0] == 0
    data = lat.read_bytes()
    bad = tmp_path / f"{kind}.hsrl"
    if kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "bitflip":
        bad.write_bytes(data[:-5] + bytes([data[-5] ^ 0x04]) + data[-4:])
    elif kind == "garbage":
        bad.write_bytes(b"\x00not a latent file" * 20)
    elif kind == "empty":
        bad.write_bytes(b"")
    else:  # a safetensors file that is not a latent: the model's own weights
        bad.write_bytes((cont_dir / "model.safetensors").read_bytes())
    rc, _, err = cli(capsys, "decode", bad, "-o", tmp_path / "out.wav", "--model", cont_dir)
    assert rc == 1
    assert_one_error(err, bad.name, problem)
    assert not (tmp_path / "out.wav").exists()
    rc, out, err = cli(capsys, "info", bad)
    assert rc == 1 and out == ""
    assert_one_error(err, bad.name, problem)


def test_malformed_latent_file_in_a_real_process(tmp_path, cont_dir):
    bad = tmp_path / "bad.hsrl"
    bad.write_bytes((40).to_bytes(8, "little") + b'{"__metadata__": {"format": "hasrd-latent"}}')
    res = run_cli("decode", bad, "-o", tmp_path / "out.wav", "--model", cont_dir)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hasrd: error: ") and "bad.hsrl" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_evaluator_reports_the_continuous_model(tmp_path, cont_dir, cont_codec, capsys):
    """One ``hasrd-cont:NAME`` row beside the reference: float16 latent rate nominal, .hsrl bytes measured."""
    from hasrd.eval import main as eval_main
    from hasrd.eval.data import DEFAULT_EVAL_DIR

    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(DEFAULT_EVAL_DIR / "cmu_cards_001.wav", clips)
    out = tmp_path / "eval"
    code = eval_main(["--model", str(cont_dir), "--data", str(clips), "--asr", "none", "--speaker", "none",
                      "--mos", "none", "--no-probes", "--jobs", "1", "--no-progress", "--output", str(out)])
    assert code == 0
    capsys.readouterr()
    with open(out / "per_file.csv") as fh:
        rows = {r["system"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"reference", "hasrd-cont:ctiny"}
    row = rows["hasrd-cont:ctiny"]
    assert row["kind"] == "hasrd-cont" and row["n_q"] == "" and row["error"] == ""
    assert float(row["bitrate_nominal"]) == cont_codec.latent_bitrate(16) == 6400
    # measured: the .hsrl file the CLI writes for the same audio (its chunk_frames entry aside)
    rc, _, _ = cli(capsys, "encode", clips / "cmu_cards_001.wav", "-o", tmp_path / "c.hsrl", "--model", cont_dir, "--continuous")
    assert rc == 0
    payload = int(row["payload_bytes"])
    assert abs(payload - (tmp_path / "c.hsrl").stat().st_size) <= 32
    assert float(row["bitrate_measured"]) == pytest.approx(8 * payload / float(row["duration"]))
    assert math.isfinite(float(row["stoi"])) and math.isfinite(float(row["pesq_wb"]))
    summary = json.loads((out / "summary.json").read_text())
    by = {s["name"]: s for s in summary["systems"]}
    assert by["hasrd-cont:ctiny"]["kbps_nominal"] == pytest.approx(6.4)
    assert "| hasrd-cont:ctiny |" in (out / "summary.md").read_text()
