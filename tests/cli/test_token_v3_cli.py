"""Token format version 3 through the CLI: ``hasrd info`` without torch, ``hasrd decode`` picking the
built-in model a file names from the index (no model loaded to find it), versions 1 and 2 still
decoding, and a wrong model refused in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hasrd.io import load_tokens, save_tokens
from hasrd.io.modelindex import by_prefix, entries
from tests.conftest import ROOT

from .test_cli import assert_one_error, cli

DATA = ROOT / "tests" / "io" / "data"
V1_FILE = DATA / "cmu_cards_001_v1.hsrd"  # the default model, n_q 3, written before version 3
V2_FILE = DATA / "cmu_cards_001_v2.hsrd"


@pytest.fixture(scope="module")
def v3_file(tmp_path_factory) -> Path:
    """The committed version 1 file saved again as version 3 (the default model's codes)."""
    path = tmp_path_factory.mktemp("v3") / "a.hsrd"
    save_tokens(path, *load_tokens(V1_FILE))
    assert path.read_bytes()[4] == 3 and path.stat().st_size == 226
    return path


def test_info_of_a_builtin_v3_file_needs_no_torch(v3_file):
    code = ("import sys; from hasrd.cli import main; rc = main(['info', sys.argv[1]]); "
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]")
    proc = subprocess.run([sys.executable, "-c", code, str(v3_file)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["format_version"] == 3 and report["builtin_model"] == "default"
    assert (report["bytes"], report["header_bytes"], report["overhead_bytes"], report["payload_bytes"]) == (226, 15, 4, 207)
    assert report["codec"] == "hasrd" and report["frame_rate"] == 50.0 and report["codebook_sizes"] == [1024] * 3
    assert report["nominal_bitrate"] == 1500.0 and report["version"] is None and report["chunk_frames"] == 55
    assert report["actual_bitrate"] == pytest.approx(226 * 8 / (17526 / 16000))


def test_info_of_version_1_and_2_files(capsys):
    rc, out, _ = cli(capsys, "info", V1_FILE)
    report = json.loads(out)
    assert rc == 0 and report["format_version"] == 1 and report["builtin_model"] == "default"
    assert (report["header_bytes"], report["overhead_bytes"], report["payload_bytes"]) == (141, 11, 207)
    rc, out, _ = cli(capsys, "info", V2_FILE)
    assert rc == 0 and json.loads(out)["payload_coding"] == "range1" and json.loads(out)["codes_verified"] is False


def test_decode_finds_the_builtin_model_in_the_index_without_loading_any(v3_file, tmp_path, monkeypatch):
    """``_model_for`` names the model from the header alone and loads only that one."""
    import hasrd.cli.decode as decode
    import hasrd.codecs

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded to find which one made the file")

    loaded = []
    monkeypatch.setattr(hasrd.codecs, "load_codec", no_loading)
    monkeypatch.setattr(decode, "load_model", lambda name, device: loaded.append(name) or f"<{name}>")

    class Other:  # the model already loaded (another one than the file's)
        codec_name = "hasrd"

        def fingerprint(self):
            return "f" * 16

    models: dict = {}
    hcodec = tmp_path / "h.hsrd"  # a version 3 file of hcodec-25hz, made from the index's facts
    e = next(e for e in entries() if e["name"] == "hcodec-25hz")
    meta = {**load_tokens(V1_FILE)[1], "codec": e["codec"], "fingerprint": e["fingerprint"],
            "hop_length": e["hop_length"], "frame_rate": e["frame_rate"], "codebook_sizes": e["codebook_sizes"],
            "chunk_frames": None, "n_q": None, "num_frames": None}
    save_tokens(hcodec, np.zeros((2, 28), np.int64), meta)
    assert by_prefix(hcodec.read_bytes()[6:10].hex())["name"] == "hcodec-25hz"
    for src, name in ((v3_file, "default"), (hcodec, "hcodec-25hz"), (V1_FILE, "default"), (hcodec, "hcodec-25hz")):
        model, spec = decode._model_for(src, None, Other(), models, "cpu")
        assert (model, spec) == (f"<{name}>", name)
    assert loaded == ["default", "hcodec-25hz"]  # each once, none to look up


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory) -> bytes:
    """The committed version 1 file decoded with --model default."""
    from hasrd.cli import main

    out = tmp_path_factory.mktemp("ref") / "ref.wav"
    assert main(["decode", str(V1_FILE), "-o", str(out), "--model", "default"]) == 0
    return out.read_bytes()


def test_every_version_decodes_to_the_same_audio_without_model(v3_file, tmp_path, capsys, reference_wav):
    """Versions 1, 2 and 3 of the same codes, in one folder, one call, no --model."""
    from hasrd.io.entropy import EntropyTables

    shipped = ROOT / "hasrd" / "pretrained" / "default"
    folder = tmp_path / "toks"
    folder.mkdir()
    files = {"v1": V1_FILE, "v3": v3_file}
    # the committed v2 file decodes with the shipped tables while they are the ones it was coded
    # with (tests/io/test_tokenfile_v3.py reads it with its own copy of them in any case)
    if EntropyTables.load(shipped).digest == EntropyTables.load(DATA / "default_entropy.json").digest:
        files["v2"] = V2_FILE
    for name, src in files.items():
        (folder / f"{name}.hsrd").write_bytes(src.read_bytes())
    save_tokens(folder / "v3e.hsrd", *load_tokens(V1_FILE), entropy=shipped)
    rc, out, err = cli(capsys, "decode", folder, "-o", tmp_path / "wavs")
    assert rc == 0 and err == "", err
    for name in [*files, "v3e"]:
        assert (tmp_path / "wavs" / f"{name}.wav").read_bytes() == reference_wav, name


def test_wrong_model_refused_in_one_line(v3_file, tmp_path, capsys, model_dir):
    rc, _, err = cli(capsys, "decode", v3_file, "-o", tmp_path / "x.wav", "--model", model_dir)
    assert rc == 1 and not (tmp_path / "x.wav").exists()
    fp = load_tokens(V1_FILE)[1]["fingerprint"]
    assert_one_error(err, "a.hsrd", f"made by the built-in model default (hasrd {fp})", "--model default",
                     "--ignore-model-mismatch")
