"""prepare_for_inference: weight norm folded, outputs kept, the model protected from misuse."""
from __future__ import annotations

import pytest
import torch

from hasrd.codecs import build_codec
from hasrd.config import load_config
from tests.conftest import ROOT, speechlike, tiny_codec


def _weight_normed(model) -> int:
    return sum(1 for n, _ in model.named_parameters() if n.endswith("weight_g") or ".parametrizations." in n)


@pytest.mark.parametrize("name", ["hasrd", "hcodec", "causal"])
def test_prepare_for_inference_keeps_outputs(name):
    if name == "causal":
        torch.manual_seed(0)
        codec = build_codec(load_config(ROOT / "codec_configs" / "debug" / "hasrd_tiny_causal.yaml")["model"]).eval()
    else:
        codec = tiny_codec(name)
    x = speechlike(0.3)
    codes = codec.encode(x)
    audio = codec.decode(codes)
    fingerprint = codec.fingerprint()
    assert _weight_normed(codec) > 0

    assert codec.prepare_for_inference() is codec
    assert _weight_normed(codec) == 0
    assert not any(p.requires_grad for p in codec.parameters())
    assert torch.equal(codec.encode(x), codes)
    torch.testing.assert_close(codec.decode(codes), audio, atol=1e-5, rtol=0)
    codec.eval()  # allowed, and the fingerprint still names the original model
    assert codec.fingerprint() == fingerprint
    assert codec.prepare_for_inference() is codec  # idempotent


def test_prepared_codec_cannot_train_or_save(tmp_path):
    codec = tiny_codec("hasrd").prepare_for_inference()
    with pytest.raises(RuntimeError, match="cannot train"):
        codec.train()
    with pytest.raises(RuntimeError, match="save it before"):
        codec.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_encode_and_decode_run_without_autograd():
    codec = tiny_codec("hasrd")
    codes = codec.encode(speechlike(0.1))
    audio = codec.decode(codes)
    assert codes.is_inference() and audio.is_inference()
    assert not audio.requires_grad


def test_inference_snake_is_dacs_snake():
    from dac.nn.layers import Snake1d

    from hasrd.nn.inference import InferenceSnake

    snake = Snake1d(6)
    snake.alpha.data = torch.rand(1, 6, 1) * 3 + 0.05
    x = torch.randn(2, 6, 500) * 4
    torch.testing.assert_close(InferenceSnake(snake.alpha)(x), snake(x), atol=1e-5, rtol=1e-5)


def test_prepare_rewrites_every_snake_and_keeps_the_latent():
    """prepare_for_inference swaps the encoder's and the decoder's Snake; the encoder's latent
    moves by float rounding only, and the codes of these signals stay the same."""
    codec = tiny_codec("hasrd")
    x = torch.cat([speechlike(0.6, seed=s) for s in range(3)])
    z, codes = codec.encoder(x), codec.encode(x)
    codec.prepare_for_inference()
    names = lambda m: {type(s).__name__ for s in m.modules()}  # noqa: E731
    for part in (codec.encoder, codec.decoder):
        assert "InferenceSnake" in names(part) and "Snake1d" not in names(part)
    torch.testing.assert_close(codec.encoder(x), z, atol=1e-5, rtol=1e-5)
    assert torch.equal(codec.encode(x), codes)


@pytest.mark.parametrize("name", ["hasrd", "hcodec"])
def test_prepared_decoder_trace_serves_any_batch_and_length(name):
    """The traced decoder of a prepared codec (made at the first decode) equals the eager decoder
    for other batch sizes and lengths, and stays out of the state dict."""
    codec = tiny_codec(name)
    keys = set(codec.state_dict())
    codes = codec.encode(torch.cat([speechlike(0.4), speechlike(0.4, seed=1)]))
    eager, eager_short = codec.decode(codes), codec.decode(codes[:, :, :5])
    codec.prepare_for_inference()
    codec.decode(codes[:1, :, :7])  # the first call traces
    assert codec.__dict__.get("_traced_decoder") not in (None, False)
    torch.testing.assert_close(codec.decode(codes), eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(codec.decode(codes[:, :, :5]), eager_short, atol=1e-5, rtol=0)
    assert not any("_traced" in k for k in codec.state_dict()) and len(set(codec.state_dict())) <= len(keys)
