import json
import math
import shutil

import pytest
import torch

from hasrd.codecs import bitrate, build_codec, load_codec
from tests.conftest import TINY_HUBERT, speechlike, tiny_codec, tiny_config


def test_interface_and_frame_counts(codec):
    x = speechlike(0.53)
    T = x.shape[-1]
    for n in range(1, codec.num_codebooks + 1):
        codes = codec.encode(x, n)
        assert codes.dtype == torch.long
        assert codes.shape == (1, n, math.ceil(T / codec.hop_length))
        assert int(codes.max()) < min(codec.codebook_sizes)
        y = codec.decode(codes)
        assert y.shape == (1, 1, codes.shape[-1] * codec.hop_length)


def test_frame_rates():
    assert tiny_codec("hasrd").frame_rate == 50.0
    hc = tiny_codec("hcodec")
    assert hc.frame_rate == 25.0
    assert hc.encode(speechlike(1.0)).shape[-1] == 25


def test_decode_of_encode_equals_eval_forward(codec):
    x = speechlike(0.4)
    for n in range(1, codec.num_codebooks + 1):
        out = codec(x, n)
        y = codec.decode(codec.encode(x, n))[..., : x.shape[-1]]
        assert torch.allclose(out.audio, y, atol=1e-5)
        assert torch.equal(out.codes[:, :n], codec.encode(x, n))


def test_bitrate_arithmetic():
    hc, ha = tiny_codec("hcodec"), tiny_codec("hasrd")
    # 64-entry codebooks carry 6 bits a frame
    assert hc.bitrate(1) == 25 * 6 and hc.bitrate(4) == 25 * 6 * 4
    assert ha.bitrate(1) == 50 * 6 and ha.bitrate() == 50 * 6 * ha.num_codebooks
    # the GPU configs' numbers: 50 Hz x 8 x 10 bits, and 25 Hz x 8 x 10 bits
    assert bitrate(50, [1024] * 8, 8) == 4000
    assert bitrate(25, [1024] * 8, 8) == 2000
    assert ha.n_q_for_bitrate(650) == 2
    with pytest.raises(ValueError):
        ha.n_q_for_bitrate(100)
    with pytest.raises(ValueError):
        ha.bitrate(ha.num_codebooks + 1)


def test_n_q_out_of_range(codec):
    with pytest.raises(ValueError, match="n_q"):
        codec.encode(speechlike(0.1), codec.num_codebooks + 1)
    with pytest.raises(ValueError, match="n_q"):
        codec.encode(speechlike(0.1), 0)


def test_semantic_codebook_kept_under_dropout():
    torch.manual_seed(1)
    c = tiny_codec("hasrd").train()
    c.dropout = 1.0
    out = c(speechlike(0.3).repeat(16, 1, 1))
    assert out.n_q.min() >= 1
    assert out.codes.shape[1] == c.num_codebooks  # every codebook ran
    assert len(set(out.n_q.tolist())) > 1


def test_save_and_load_give_identical_outputs(codec, tmp_path):
    x = speechlike(0.3)
    codec.save_pretrained(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())
    assert stored["codec"] == codec.codec_name
    loaded = load_codec(tmp_path / "m")
    assert type(loaded) is type(codec)
    assert loaded.fingerprint() == codec.fingerprint()
    for n in (1, codec.num_codebooks):
        assert torch.equal(loaded.encode(x, n), codec.encode(x, n))
        codes = codec.encode(x, n)
        assert torch.allclose(loaded.decode(codes), codec.decode(codes))


def test_fingerprint_changes_with_weights():
    a, b = tiny_codec("hasrd"), tiny_codec("hasrd")
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        next(b.decoder.parameters()).add_(1e-3)
    b._fingerprint = None
    assert a.fingerprint() != b.fingerprint()


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_codec(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a hasrd model"):
        load_codec(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown codec"):
        build_codec({"name": "nope"})


@pytest.mark.parametrize("arch", ["hubert", "wavlm"])
def test_ssl_encoder_from_pretrained_folder(arch, tmp_path):
    """A tiny random HuBERT/WavLM saved to disk goes through the real from_pretrained path."""
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    cfg_cls, model_cls = (HubertConfig, HubertModel) if arch == "hubert" else (WavLMConfig, WavLMModel)
    torch.manual_seed(0)
    ref = model_cls(cfg_cls(**TINY_HUBERT)).eval()
    ref.save_pretrained(tmp_path / "ssl")

    cfg = tiny_config("hasrd")["model"]
    cfg["encoder"] = {"type": "ssl", "arch": arch, "pretrained": str(tmp_path / "ssl"), "num_layers": 1, "trainable": "last:1"}
    codec = build_codec(cfg)
    # the efficient encoder kept only the first layer, with the saved weights
    enc = codec.encoder.features.model
    assert len(enc.encoder.layers) == 1
    assert torch.equal(enc.encoder.layers[0].attention.k_proj.weight, ref.encoder.layers[0].attention.k_proj.weight)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layers.0") for n in trainable)

    codec.train()
    codec(speechlike(0.3).repeat(2, 1, 1))
    codec.eval()
    x = speechlike(0.3)
    codec.save_pretrained(tmp_path / "codec")
    shutil.rmtree(tmp_path / "ssl")  # the saved codec must not need the SSL folder any more
    loaded = load_codec(tmp_path / "codec")
    assert torch.equal(loaded.encode(x), codec.encode(x))


def test_ssl_encoder_frozen_gets_no_gradient():
    cfg = tiny_config("hasrd")["model"]
    cfg["encoder"] = {"type": "ssl", "arch": "hubert", "config": TINY_HUBERT, "trainable": "frozen"}
    codec = build_codec(cfg).train()
    out = codec(speechlike(0.3).repeat(2, 1, 1))
    out.audio.abs().mean().backward()
    assert all(p.grad is None for p in codec.encoder.features.model.parameters())
    assert codec.encoder.proj.weight.grad is not None


def test_hop_mismatch_is_refused():
    cfg = tiny_config("hasrd")["model"]
    cfg["decoder"]["rates"] = [8, 4, 4, 2]
    with pytest.raises(ValueError, match="hop"):
        build_codec(cfg)


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path):
    from safetensors import safe_open

    codec = tiny_codec("hasrd")
    codec.save_pretrained(tmp_path / "f32")
    codec.save_pretrained(tmp_path / "f16", dtype="float16")
    size = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("f32", "f16")}
    assert size["f16"] < 0.55 * size["f32"], size
    with safe_open(str(tmp_path / "f16" / "model.safetensors"), "pt") as f:
        assert f.metadata()["dtype"] == "float16"
        stored = {k: f.get_tensor(k) for k in f.keys()}
    original = codec.inference_state_dict()
    assert stored.keys() == original.keys()
    for k, v in original.items():
        assert stored[k].dtype == (torch.float16 if v.is_floating_point() else v.dtype), k
    loaded = load_codec(tmp_path / "f16")
    for k, v in loaded.state_dict().items():
        assert v.dtype == original[k].dtype, k  # back to float32 in memory
        assert torch.equal(v, original[k].to(stored[k].dtype).to(v.dtype)), k  # the stored values exactly
    x = speechlike(0.3)
    codes = codec.encode(x)
    ref, out = codec.decode(codes), loaded.decode(codes)
    snr = 10 * torch.log10(ref.pow(2).sum() / (ref - out).pow(2).sum())
    assert snr > 30, f"float16 weights change the decoded audio: {snr:.1f} dB"


def test_storage_keeps_what_float16_cannot_hold_and_refuses_unknown_types(tmp_path):
    from hasrd.codecs.persist import storage_tensor

    small, large = torch.tensor([1.5, -2.0]), torch.tensor([1.0, 1e6])
    assert storage_tensor(small, torch.float16).dtype == torch.float16
    assert storage_tensor(large, torch.float16).dtype == torch.float32  # 1e6 overflows float16
    assert storage_tensor(large, torch.bfloat16).dtype == torch.bfloat16  # bfloat16's range holds it
    assert storage_tensor(torch.tensor([float("inf"), 1.0]), torch.float16).dtype == torch.float16  # inf stays inf
    assert storage_tensor(torch.tensor([float("inf"), 1e6]), torch.float16).dtype == torch.float32
    assert storage_tensor(torch.tensor([3]), torch.float16).dtype == torch.long
    with pytest.raises(ValueError, match="int8"):
        tiny_codec("hasrd").save_pretrained(tmp_path / "m", dtype="int8")
    assert not (tmp_path / "m").exists()
