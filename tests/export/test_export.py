"""ONNX export: onnxruntime against the torch codec, dynamic shapes, export.json, the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from hasrd.codecs import build_codec, load_codec  # noqa: E402
from hasrd.export import ExportError, OnnxCodec, build_graphs, export_onnx  # noqa: E402
from hasrd.export.graphs import TIE_TOLERANCE, code_margins  # noqa: E402
from tests.conftest import ROOT, speechlike, tiny_codec, tiny_config  # noqa: E402

DECODE_ATOL = 1e-4  # the stated tolerance of decoded audio, onnxruntime vs torch


def kmeans_codec(name: str):
    """A tiny codec whose k-means codebooks were initialised by one training forward pass."""
    cfg = tiny_config(name)["model"]
    cfg["quantizer"]["kmeans_init"] = True
    torch.manual_seed(0)
    codec = build_codec(cfg).train()
    with torch.no_grad():  # 8 s of frames: enough vectors for the 64-entry codebooks
        codec(torch.cat([speechlike(1.0, seed=s) for s in range(8)]))
    return codec.eval()


def signals():
    """Two lengths (neither a whole number of frames) and two batch sizes."""
    return [torch.cat([speechlike(0.8, seed=1), speechlike(0.8, seed=2)])[..., :12345],
            speechlike(0.5, seed=3)[..., :7777]]


@pytest.fixture(scope="module", params=["hasrd", "hcodec"])
def exported(request, tmp_path_factory):
    codec = tiny_codec(request.param)
    out = tmp_path_factory.mktemp(f"onnx_{request.param}")
    paths = export_onnx(codec, out)
    return codec, out, paths


def test_files_and_manifest(exported):
    codec, out, paths = exported
    assert sorted(os.listdir(out)) == ["decoder.onnx", "encoder.onnx", "export.json"]  # no temp files left
    assert paths == {"encoder": out / "encoder.onnx", "decoder": out / "decoder.onnx", "manifest": out / "export.json"}
    m = json.loads(paths["manifest"].read_text())
    assert m["codec"] == codec.codec_name and m["fingerprint"] == codec.fingerprint()
    assert m["sample_rate"] == codec.sample_rate and m["hop_length"] == codec.hop_length
    assert m["n_q"] == codec.num_codebooks and m["codebook_sizes"] == list(codec.codebook_sizes)
    assert m["opset"] == 18 and m["exporter"] == "torchscript"
    check = m["check"]
    assert check["codes_identical"] is True and check["codes_different_at_near_ties"] == 0
    assert 0 <= check["decoder_max_abs_diff"] <= DECODE_ATOL


def test_onnxruntime_matches_torch(exported):
    codec, out, _ = exported
    runner = OnnxCodec(out)
    for x in signals():
        got = runner.encode(x.numpy())
        ref = codec.encode(x)
        assert got.dtype == np.int64
        assert got.shape == (x.shape[0], codec.num_codebooks, -(-x.shape[-1] // codec.hop_length))
        np.testing.assert_array_equal(got, ref.numpy())  # codes identical
        for n in range(1, codec.num_codebooks + 1):  # one decoder for every n_q
            want = codec.decode(ref[:, :n]).numpy()
            y = runner.decode(ref[:, :n].numpy())
            assert y.shape == want.shape == (x.shape[0], 1, ref.shape[-1] * codec.hop_length)
            assert np.abs(y - want).max() <= DECODE_ATOL, n


def test_projected_codebooks(tmp_path):
    """Codebooks in a smaller space (codebook_dim: the library's project_in / project_out)."""
    cfg = tiny_config("hasrd")["model"]
    cfg["quantizer"]["codebook_dim"] = 8
    torch.manual_seed(0)
    codec = build_codec(cfg).eval()
    enc_graph, _ = build_graphs(codec)
    assert isinstance(enc_graph.semantic[0].project_in, torch.nn.Linear)
    export_onnx(codec, tmp_path)
    runner = OnnxCodec(tmp_path)
    for x in signals():
        ref = codec.encode(x)
        np.testing.assert_array_equal(runner.encode(x.numpy()), ref.numpy())
        assert np.abs(runner.decode(ref.numpy()) - codec.decode(ref).numpy()).max() <= DECODE_ATOL


def test_decoder_refuses_too_many_codebooks(exported):
    codec, out, _ = exported
    runner = OnnxCodec(out)
    codes = np.random.default_rng(0).integers(0, 64, size=(1, codec.num_codebooks + 1, 5))
    with pytest.raises(ValueError, match="1 <= n"):
        runner.decode(codes)
    # the bare graph cannot raise: it ignores rows past num_codebooks (documented in docs/export.md)
    y = runner.decoder.run(None, {"codes": codes})[0]
    np.testing.assert_array_equal(y, runner.decode(codes[:, : codec.num_codebooks]))


def test_kmeans_codebooks_and_fixed_n_q(tmp_path):
    """A k-means-initialised codec exported with n_q=2: codes equal the torch ones except at
    certified near ties (float32 rounding decides those; see code_margins)."""
    codec = kmeans_codec("hasrd")
    paths = export_onnx(codec, tmp_path, n_q=2)
    runner = OnnxCodec(tmp_path)
    enc_graph, _ = build_graphs(codec, 2)
    total = differ = 0
    for x in signals():
        ref = codec.encode(x, 2)
        got = torch.from_numpy(runner.encode(x.numpy()))
        assert got.shape == ref.shape
        # the plain-torch wrapper reproduces the library exactly
        assert torch.equal(enc_graph(x), ref)
        # onnxruntime: wherever it differs, the entry it chose is as near as the library's
        margins = code_margins(enc_graph, x, got)
        assert all(float(m) <= TIE_TOLERANCE for m in margins[got != ref])
        total += ref.numel()
        differ += int((got != ref).sum())
        y = runner.decode(ref.numpy())
        assert np.abs(y - codec.decode(ref).numpy()).max() <= DECODE_ATOL
    assert differ <= 0.02 * total
    m = json.loads(paths["manifest"].read_text())
    assert m["n_q"] == 2 and m["decoder"]["input"]["n_q"] == [1, codec.num_codebooks]


def test_margins_catch_a_wrong_code():
    codec = kmeans_codec("hasrd")
    graph, _ = build_graphs(codec)
    x = speechlike(0.3, seed=5)
    codes = codec.encode(x)
    assert float(code_margins(graph, x, codes).max()) <= TIE_TOLERANCE
    # the entry farthest from the semantic latent of frame 3 is no tie
    h = graph.stage_inputs(x, codes)[0][0, 3]
    far = int(((h - graph.semantic[0].embed) ** 2).sum(-1).argmax())
    bad = codes.clone()
    bad[0, 0, 3] = far
    assert float(code_margins(graph, x, bad)[0, 0, 3]) > 100 * TIE_TOLERANCE


def test_failed_check_leaves_nothing(tmp_path, monkeypatch):
    """An encoder graph that gives other codes fails the export; no file is left behind."""
    from hasrd.export import onnx as onnx_mod

    real = onnx_mod._session

    class Shifted:
        def __init__(self, session):
            self.session = session

        def run(self, names, feeds):
            out = self.session.run(names, feeds)
            return [(out[0] + 1) % 64] if "wav" in feeds else out

    monkeypatch.setattr(onnx_mod, "_session", lambda path, threads=1: Shifted(real(path, threads)))
    with pytest.raises(ExportError, match="not all at near ties"):
        export_onnx(tiny_codec("hasrd"), tmp_path / "out")
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_refusals(tmp_path):
    codec = tiny_codec("hasrd")
    for bad in (0, codec.num_codebooks + 1, 1.5, True):
        with pytest.raises(ExportError, match="n_q"):
            export_onnx(codec, tmp_path / "x", n_q=bad)
    with pytest.raises(ExportError, match="exporter"):
        export_onnx(codec, tmp_path / "x", exporter="tflite")
    with pytest.raises(ExportError, match="opset"):
        export_onnx(codec, tmp_path / "x", opset=7)
    cfg = tiny_config("hasrd")["model"]
    cfg["quantizer"]["kmeans_init"] = True
    with pytest.raises(ExportError, match="not initialised"):
        export_onnx(build_codec(cfg).eval(), tmp_path / "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export_onnx(codec, tmp_path / "file")
    assert not (tmp_path / "x").exists()


def test_continuous_codec_refused(tmp_path):
    from hasrd.config import load_config

    cfg = load_config(ROOT / "codec_configs" / "debug" / "continuous_tiny.yaml")["model"]
    with pytest.raises(ExportError, match="continuous"):
        export_onnx(build_codec(cfg).eval(), tmp_path)


def test_prepared_codec_exports(tmp_path):
    """A codec whose weight norm was already folded (prepare_for_inference) exports the same."""
    codec = tiny_codec("hasrd")
    x = signals()[1]
    ref = codec.encode(x)
    codec.prepare_for_inference()
    export_onnx(codec, tmp_path)
    np.testing.assert_array_equal(OnnxCodec(tmp_path).encode(x.numpy()), ref.numpy())


# ---------------------------------------------------------------------------------------------
# the CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    kmeans_codec("hasrd").save_pretrained(path)
    return path


def test_cli_export(tmp_path, capsys, model_dir):
    from hasrd.cli import main

    out = tmp_path / "onnx"
    assert main(["export", "--model", str(model_dir), "-o", str(out), "--n-q", "3"]) == 0
    stdout, err = capsys.readouterr()
    assert err == "" and "exported hasrd" in stdout
    m = json.loads((out / "export.json").read_text())
    codec = load_codec(model_dir)
    assert m["n_q"] == 3 and m["fingerprint"] == codec.fingerprint()
    x = signals()[0]
    got = OnnxCodec(out).encode(x.numpy())
    assert got.shape == (2, 3, -(-x.shape[-1] // codec.hop_length))
    assert (got == codec.encode(x, 3).numpy()).mean() >= 0.98  # identical but for near ties

    # existing files are kept without --force: one line, exit 1
    before = (out / "encoder.onnx").read_bytes()
    assert main(["export", "--model", str(model_dir), "-o", str(out)]) == 1
    _, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and err.startswith("hasrd: error: ") and "--force" in err
    assert (out / "encoder.onnx").read_bytes() == before


@pytest.mark.parametrize("args, match", [
    (["--n-q", "9"], "--n-q 9"),
    (["--n-q", "0"], "--n-q 0"),
    (["--opset", "3"], "--opset 3"),
    (["--format", "tflite"], "invalid choice"),
])
def test_cli_usage_errors(tmp_path, capsys, model_dir, args, match):
    from hasrd.cli import main

    out = tmp_path / "onnx"
    try:
        rc = main(["export", "--model", str(model_dir), "-o", str(out), *args])
    except SystemExit as exc:  # argparse's own refusals
        rc = exc.code
    _, err = capsys.readouterr()
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith("hasrd: error: ") and match in err
    assert "Traceback" not in err and not out.exists()


def test_cli_subprocess_one_line_error(tmp_path, model_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("HASRD_DEBUG", None)
    res = subprocess.run([sys.executable, "-m", "hasrd", "export", "--model", str(model_dir), "-o",
                          str(tmp_path / "o"), "--n-q", "7"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["hasrd: error: --n-q 7: the model has 4 codebooks, so n_q must be in 1..4"]


@pytest.mark.skipif(os.environ.get("HASRD_TEST_DYNAMO") != "1", reason="the dynamo exporter takes ~1 min on a CPU; set HASRD_TEST_DYNAMO=1")
def test_dynamo_exporter(tmp_path):
    codec = tiny_codec("hasrd")
    export_onnx(codec, tmp_path, exporter="dynamo")
    runner = OnnxCodec(tmp_path)
    for x in signals():
        ref = codec.encode(x)
        np.testing.assert_array_equal(runner.encode(x.numpy()), ref.numpy())
        assert np.abs(runner.decode(ref[:, :2].numpy()) - codec.decode(ref[:, :2]).numpy()).max() <= DECODE_ATOL
