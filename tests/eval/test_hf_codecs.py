"""``--baselines hf:PATH_OR_ID[@BITRATE]``: transformers audio codecs as baselines, on tiny random
configs saved with save_pretrained (no download anywhere)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hasrd.eval.systems import HfCodecSystem, SystemUnavailable, parse_baseline
from tests.codecs.test_hub import make_hub_cache

transformers = pytest.importorskip("transformers")

SR = 16000
BITS = 6  # every tiny model has 64-entry codebooks

# name -> (config builder, two bitrates it offers, its default bitrate, samples per frame at its rate, rate)
TINY = {
    # 24 kHz, hop 32: 750 frames/s x 6 bits = 4.5 kbit/s a quantizer; bandwidths 4.5 and 9 kbit/s
    "encodec": (lambda t: t.EncodecModel(t.EncodecConfig(
        sampling_rate=24000, target_bandwidths=[4.5, 9.0], hidden_size=16, num_filters=4, upsampling_ratios=[8, 4],
        num_lstm_layers=1, codebook_size=64, codebook_dim=16)), (4500, 9000), 4500, 32, 24000),
    # 16 kHz, hop 32: 500 frames/s x 6 bits = 3 kbit/s a codebook, 4 codebooks
    "dac": (lambda t: t.DacModel(t.DacConfig(
        encoder_hidden_size=4, downsampling_ratios=[4, 8], decoder_hidden_size=16, n_codebooks=4, codebook_size=64,
        codebook_dim=4, sampling_rate=16000)), (3000, 6000), 12000, 32, 16000),
    # 24 kHz, frame size 64 (hop 32, then 2x down-sampling): 375 frames/s x 6 bits = 2.25 kbit/s a quantizer
    "mimi": (lambda t: t.MimiModel(t.MimiConfig(
        sampling_rate=24000, hidden_size=16, num_filters=4, upsampling_ratios=[8, 4], codebook_size=64, codebook_dim=16,
        num_quantizers=4, num_semantic_quantizers=1, vector_quantization_hidden_dimension=16, upsample_groups=16,
        num_hidden_layers=1, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2, sliding_window=16,
        max_position_embeddings=1000)), (2250, 6750), 9000, 64, 24000),
    # X-Codec: a tiny DAC acoustic half and a tiny HuBERT semantic half, 16 kHz, hop 32: 3 kbit/s a quantizer
    "xcodec": (lambda t: t.XcodecModel(t.XcodecConfig(
        target_bandwidths=[3.0, 6.0], sample_rate=16000, codebook_size=64,
        acoustic_model_config=t.DacConfig(encoder_hidden_size=4, downsampling_ratios=[4, 8], decoder_hidden_size=16,
                                          codebook_dim=4),
        semantic_model_config=t.HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32, conv_dim=[8, 8], conv_stride=[4, 8],
                                             conv_kernel=[4, 8], num_conv_pos_embeddings=8,
                                             num_conv_pos_embedding_groups=2))), (3000, 6000), 6000, 32, 16000),
}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Each tiny codec saved with save_pretrained (random weights), and a tiny BERT config."""
    import torch

    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for name, (build, *_rest) in TINY.items():
        torch.manual_seed(0)
        build(transformers).save_pretrained(root / name)
        dirs[name] = root / name
    transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                            vocab_size=50).save_pretrained(root / "bert")
    dirs["bert"] = root / "bert"
    return dirs


def signal(seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.parametrize("name", list(TINY))
def test_each_codec_runs_at_two_bitrates(name, hf_dirs):
    _, rates, default, hop, rate = TINY[name]
    x = signal(0.5)
    frames = math.ceil(0.5 * rate / hop)
    seen = []
    for bps in rates:
        s = parse_baseline(f"hf:{hf_dirs[name]}@{bps / 1000:g}kbps")
        assert isinstance(s, HfCodecSystem) and s.kind == "hf"
        assert s.name == f"hf:{name}@{bps / 1000:g}kbps" and s.family == f"hf:{name}"
        assert s.bitrate_nominal == bps and s.n_q == round(bps / (s.frame_rate * BITS))
        out, payload = s.process(x, SR)
        assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
        # the codes' bits: frames x n_q x 6, rounded up to bytes (X-Codec pads half a hop each side)
        assert payload in {math.ceil(f * s.n_q * BITS / 8) for f in (frames, frames + 1)}, (payload, frames, s.n_q)
        seen.append((s.bitrate_nominal, payload))
    assert seen[0][0] < seen[1][0] and seen[0][1] < seen[1][1]
    plain = parse_baseline(f"hf:{hf_dirs[name]}")  # no @: what the model's encode does by default
    assert plain.bitrate_nominal == default and default in plain.bitrates()


def test_a_bitrate_not_offered_lists_the_offered_ones(hf_dirs):
    with pytest.raises(ValueError) as info:
        parse_baseline(f"hf:{hf_dirs['encodec']}@5kbps")
    text = str(info.value)
    assert "\n" not in text and "5000 bit/s is not offered" in text and "4.5kbps, 9kbps" in text
    with pytest.raises(ValueError, match="2.25kbps, 4.5kbps, 6.75kbps, 9kbps"):
        parse_baseline(f"hf:{hf_dirs['mimi']}@1k")
    with pytest.raises(ValueError, match="cannot read a bitrate"):
        parse_baseline(f"hf:{hf_dirs['dac']}@fast")


def test_a_model_that_is_not_an_audio_codec_is_refused(hf_dirs):
    with pytest.raises(ValueError) as info:
        parse_baseline(f"hf:{hf_dirs['bert']}")
    text = str(info.value)
    assert "\n" not in text and "is not an audio codec (BertModel)" in text
    assert "hf: takes EncodecModel, DacModel, MimiModel, XcodecModel" in text


def test_missing_models_are_skips_of_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemUnavailable) as info:
        parse_baseline("hf:org/no-such-codec@1.5kbps")
    text = str(info.value)
    assert "\n" not in text and text.startswith("hf:org/no-such-codec: ")
    assert "`hf download org/no-such-codec`" in text and str(tmp_path / "hub") in text
    with pytest.raises(SystemUnavailable, match="no such local folder"):
        parse_baseline(f"hf:{tmp_path}/nope")
    with pytest.raises(ValueError, match="needs a model"):
        parse_baseline("hf:")


def test_a_hub_id_from_the_local_hub_cache(hf_dirs, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    make_hub_cache(cache, "tiny-org/encodec-tiny", hf_dirs["encodec"])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = parse_baseline("hf:tiny-org/encodec-tiny@9kbps")
    assert s.name == "hf:encodec-tiny@9kbps" and s.n_q == 2
    out, _ = s.process(signal(0.25), SR)
    assert out.shape == (4000,) and np.isfinite(out).all()


def test_evaluate_reports_hf_rows_and_plots(hf_dirs, clips_dir, tmp_path):
    from hasrd.eval import main

    out = tmp_path / "eval"
    spec = f"hf:{hf_dirs['encodec']},hf:{hf_dirs['encodec']}@9kbps"
    rc = main(["--data", str(clips_dir), "--baselines", spec, "--asr", "none", "--speaker", "none", "--mos", "none",
               "--no-probes", "--jobs", "1", "--no-progress", "--output", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["systems"]}
    assert {"hf:encodec@4.5kbps", "hf:encodec@9kbps"} <= set(rows)
    for name, nominal in (("hf:encodec@4.5kbps", 4.5), ("hf:encodec@9kbps", 9.0)):
        assert rows[name]["kind"] == "hf" and rows[name]["family"] == "hf:encodec"
        assert rows[name]["kbps_nominal"] == pytest.approx(nominal)
        assert rows[name]["kbps_measured"] == pytest.approx(nominal, rel=0.02)  # codes only: nominal, up to rounding
    assert (out / "plots.png").stat().st_size > 0 and "hf:encodec@9kbps" in (out / "summary.md").read_text()
