"""The latent interface every codec has (``encode_to_latent`` / ``decode_latent`` / ``latent_dim``), the
token codecs' bridge between latent and codes, and the latent view built on them."""
import math

import numpy as np
import pytest
import torch

from hasrd.codecs import BUILTIN_MODELS, PRETRAINED_DIR, Codec, CodecView, TokenCodec, build_codec, load_codec
from hasrd.config import load_config
from tests.conftest import ROOT, speechlike, tiny_codec

CONTINUOUS_TINY = ROOT / "codec_configs" / "debug" / "continuous_tiny.yaml"


def tiny_continuous():
    torch.manual_seed(0)
    return build_codec(load_config(CONTINUOUS_TINY)["model"]).eval()


@pytest.fixture(params=["hasrd", "hcodec", "continuous"])
def any_codec(request):
    return tiny_continuous() if request.param == "continuous" else tiny_codec(request.param)


def expected_latent_dim(codec) -> int:
    cfg = codec.config
    return int(cfg["semantic_dim"]) + int(cfg["acoustic_dim"]) if codec.codec_name == "hcodec" else int(cfg["latent_dim"])


def test_every_codec_has_the_latent_interface_with_its_shapes(any_codec):
    c = any_codec
    assert isinstance(c, Codec) and c.latent_dim == expected_latent_dim(c)
    assert c.continuous == (not isinstance(c, TokenCodec))
    x = torch.cat([speechlike(0.53), speechlike(0.53, seed=1)])  # a batch of two
    frames = math.ceil(x.shape[-1] / c.hop_length)
    for quantize in (False, True):
        z = c.encode_to_latent(x, quantize=quantize)
        assert z.dtype == torch.float32 and z.shape == (2, c.latent_dim, frames), (quantize, z.shape)
        y = c.decode_latent(z)
        assert y.shape == (2, 1, frames * c.hop_length) and torch.isfinite(y).all()
    assert c.latent_bitrate(16) == c.frame_rate * c.latent_dim * 16
    with pytest.raises(ValueError, match="latent"):
        c.decode_latent(torch.zeros(1, c.latent_dim + 1, 3))
    with pytest.raises(TypeError, match="float"):
        c.decode_latent(torch.zeros(1, c.latent_dim, 3, dtype=torch.long))


def test_the_latent_needs_no_gradient_and_is_one_batch_item_at_a_time(any_codec):
    c = any_codec
    x = torch.cat([speechlike(0.3), speechlike(0.3, seed=2)])
    z = c.encode_to_latent(x)
    assert not z.requires_grad
    assert torch.allclose(z[1:], c.encode_to_latent(x[1:]), atol=1e-5)


@pytest.mark.parametrize("name", ["hasrd", "hcodec"])
def test_token_codec_quantized_latent_decodes_to_what_decode_of_encode_gives(name):
    c = tiny_codec(name)
    x = speechlike(0.45)
    for n in range(1, c.num_codebooks + 1):
        codes = c.encode(x, n)
        zq = c.encode_to_latent(x, quantize=True, n_q=n)
        assert torch.equal(c.decode_latent(zq), c.decode(codes)), n
        assert torch.equal(zq, c.codes_to_latent(codes))
        assert torch.equal(c.latent_to_codes(c.encode_to_latent(x), n), codes)
        assert torch.equal(c.quantize_latent(c.encode_to_latent(x), n), zq)
    # all codebooks by default; quantization changes the latent
    z, zq = c.encode_to_latent(x), c.encode_to_latent(x, quantize=True)
    assert torch.equal(c.decode_latent(zq), c.decode(c.encode(x)))
    assert not torch.allclose(z, zq)
    with pytest.raises(ValueError, match="quantize=True"):
        c.encode_to_latent(x, n_q=1)
    with pytest.raises(ValueError, match="n_q"):
        c.latent_to_codes(z, c.num_codebooks + 1)
    with pytest.raises(ValueError, match="n_q"):
        c.codes_to_latent(torch.zeros(1, c.num_codebooks + 1, 4, dtype=torch.long))


def test_the_unquantised_latent_decodes_through_the_codec_decoder():
    """HASRD: decode_latent of the encoder output is the decoder on it (the evaluator's unquantised bound)."""
    c = tiny_codec("hasrd")
    x = speechlike(0.3)
    with torch.no_grad():
        bound = c.decoder(c.encoder(c.pad_to_hop(x)))
    assert torch.equal(c.decode_latent(c.encode_to_latent(x)), bound)


def test_a_semantic_prefix_of_the_dual_stream_codec_has_a_zero_acoustic_latent():
    c = tiny_codec("hcodec")
    n_sem = c.num_semantic_codebooks
    zq = c.encode_to_latent(speechlike(0.4), quantize=True, n_q=n_sem)
    assert zq[:, c.config["semantic_dim"]:].abs().max() == 0
    assert zq[:, : c.config["semantic_dim"]].abs().max() > 0


def test_continuous_quantize_is_the_storage_rounding_of_a_latent_file():
    from hasrd.io.latentfile import latent_from_bytes, latent_meta, latent_to_bytes

    c = tiny_continuous()
    x = speechlike(0.4)
    z, zq = c.encode_to_latent(x), c.encode_to_latent(x, quantize=True)
    assert zq.dtype == torch.float32 and torch.equal(zq, z.half().float())
    stored, _ = latent_from_bytes(latent_to_bytes(z[0].numpy(), latent_meta(c, length=x.shape[-1], orig_sample_rate=16000)))
    assert np.array_equal(stored.astype(np.float32), zq[0].numpy())
    assert torch.equal(c.decode_latent(zq), c.decode_latent(torch.from_numpy(stored)[None]))


def test_the_view_reads_every_codec_through_its_public_interface(any_codec):
    c = any_codec
    view = CodecView(c)
    x = speechlike(0.4)
    z, codes = view.analyse(x)
    assert view.latent_dim == c.latent_dim == z.shape[1] and torch.equal(z, c.encode_to_latent(x))
    assert torch.equal(view.synthesize_latent(z, requantize=False), c.decode_latent(z))
    if isinstance(c, TokenCodec):
        assert view.tokens and torch.equal(codes, c.encode(x))
        assert torch.equal(view.synthesize_latent(z, requantize=True), c.decode(codes))
        assert torch.equal(view.synthesize_codes(codes[:, :1]), c.decode(codes[:, :1]))
    else:
        assert not view.tokens and codes is None
        assert torch.equal(view.synthesize_latent(z, requantize=True), c.decode_latent(z))  # nothing to requantize
        with pytest.raises(ValueError, match="no codes"):
            view.synthesize_codes(torch.zeros(1, 1, 3, dtype=torch.long))


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_built_in_models_latents_agree_with_their_codes(name):
    if not (PRETRAINED_DIR / name / "model.safetensors").is_file():
        pytest.skip(f"the built-in {name} model is not installed")
    c = load_codec(name)
    x = speechlike(0.5)
    codes = c.encode(x)
    assert torch.equal(c.latent_to_codes(c.encode_to_latent(x)), codes)
    assert torch.equal(c.decode_latent(c.encode_to_latent(x, quantize=True)), c.decode(codes))
    assert c.encode_to_latent(x).shape == (1, c.latent_dim, codes.shape[-1])
