"""The frame-rate iSTFT generator (decoder type ``istft``): exact inverse STFT, shapes, refusals,
the codec around it (traced inference path, ONNX export, frozen parts while training)."""
from __future__ import annotations

import pytest
import torch

from hasrd.codecs import build_codec
from hasrd.decoders import IstftGenerator, build_generator
from hasrd.decoders.istft import OverlapAddISTFT
from tests.conftest import speechlike, tiny_config

ISTFT_DECODER = {"type": "istft", "dim": 32, "hidden": 64, "layers": 2}


def istft_codec(**decoder):
    cfg = tiny_config("hasrd")["model"]
    cfg["decoder"] = {**ISTFT_DECODER, **decoder}
    torch.manual_seed(0)
    return build_codec(cfg).eval()


@pytest.mark.parametrize("n_fft, hop", [(1280, 320), (64, 16), (48, 16)])
def test_overlap_add_inverts_the_stft(n_fft, hop):
    """Real/imaginary STFT frames in, the signal back out: the same as torch.istft, shifted by
    half a hop ("same" padding centres frame f on sample f*hop + hop/2)."""
    torch.manual_seed(1)
    x = torch.randn(2, 40 * hop)
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)
    y = OverlapAddISTFT(n_fft, hop)(torch.cat([spec.real, spec.imag], dim=1))
    assert y.shape == (2, 1, spec.shape[-1] * hop)
    ref = torch.istft(spec, n_fft, hop, window=window, center=True, length=x.shape[-1])
    torch.testing.assert_close(y[:, 0, hop // 2: x.shape[-1]], ref[:, : x.shape[-1] - hop // 2], atol=1e-5, rtol=0)
    torch.testing.assert_close(ref, x, atol=1e-5, rtol=0)


def test_generator_shapes_and_refusals():
    gen = IstftGenerator(16, hop=320, dim=32, layers=2)
    assert gen(torch.randn(3, 16, 7)).shape == (3, 1, 7 * 320)
    with pytest.raises(ValueError, match="not causal"):
        build_generator({"type": "istft"}, 16, hop=320, causal=True)
    with pytest.raises(ValueError, match="unknown keys"):
        build_generator({"type": "istft", "channels": 8}, 16, hop=320)
    with pytest.raises(ValueError, match="'dac' or 'istft'"):
        build_generator({"type": "wavenet"}, 16, hop=320)
    with pytest.raises(ValueError, match="n_fft"):
        OverlapAddISTFT(100, 320)
    with pytest.raises(ValueError, match="upsample"):
        build_generator({"type": "istft", "upsample": 3}, 16, hop=320)
    with pytest.raises(ValueError, match="upsample"):
        IstftGenerator(16, hop=320, upsample=0)
    cfg = tiny_config("hasrd")["model"]
    cfg.update(causal=True, decoder=ISTFT_DECODER)
    with pytest.raises(ValueError, match="not causal"):
        build_codec(cfg)


@pytest.mark.parametrize("upsample", [2, 4, 5])
def test_upsampled_stft_runs_at_a_multiple_of_the_frame_rate(upsample):
    """decoder.upsample: STFT hop = hop / upsample, n_fft 4 times that by default, same output
    length; every output sample depends on the input frame it belongs to."""
    gen = IstftGenerator(16, hop=320, dim=32, layers=2, upsample=upsample)
    assert gen.istft.hop == 320 // upsample and gen.istft.n_fft == 4 * (320 // upsample)
    assert gen.head.out_features == 2 * (2 * (320 // upsample) + 1)
    z = torch.randn(2, 16, 40, requires_grad=True)
    y = gen(z)
    assert y.shape == (2, 1, 40 * 320)
    y[0, 0, 4 * 320: 5 * 320].sum().backward()  # frame 4's samples
    reach = z.grad[0].abs().sum(0)
    assert reach[4] > 0 and (reach[20:] == 0).all()  # frame 4 itself counts; far frames do not
    assert build_generator({"type": "istft", "dim": 32, "layers": 2, "upsample": upsample, "post_layers": 2},
                           16, hop=320).post.__len__() == 2


@pytest.mark.parametrize("decoder", [{}, {"upsample": 2}])
def test_codec_round_trip_and_traced_inference(decoder):
    """Encode/decode keep the length; the prepared (frozen TorchScript) decoder gives the eager
    decoder's audio at another batch size and length than it was traced with."""
    codec = istft_codec(**decoder)
    x = speechlike(0.5)
    codes = codec.encode(x)
    eager = codec.decode(codes)
    assert eager.shape == (1, 1, codes.shape[-1] * codec.hop_length)
    assert torch.isfinite(eager).all()
    other = torch.cat([speechlike(0.3, seed=2), speechlike(0.3, seed=3)])
    eager_other = codec.decode(codec.encode(other))
    codec.prepare_for_inference()
    assert (codec.encode(x) == codes).all()
    torch.testing.assert_close(codec.decode(codes), eager, atol=1e-5, rtol=0)
    assert codec.__dict__.get("_traced_decoder") not in (None, False)
    torch.testing.assert_close(codec.decode(codec.encode(other)), eager_other, atol=1e-5, rtol=0)


@pytest.mark.parametrize("decoder", [{}, {"upsample": 2}])
def test_onnx_export_matches_torch(tmp_path, decoder):
    pytest.importorskip("onnxruntime")
    from hasrd.export import OnnxCodec, export_onnx

    codec = istft_codec(**decoder)
    export_onnx(codec, tmp_path)  # runs its own onnxruntime-vs-torch check before writing
    x = speechlike(0.4, seed=5)
    codes = codec.encode(x)
    onnx = OnnxCodec(tmp_path)
    assert (onnx.encode(x.numpy()) == codes.numpy()).all()
    torch.testing.assert_close(torch.from_numpy(onnx.decode(codes.numpy())), codec.decode(codes), atol=1e-4, rtol=0)


def test_frozen_parts_do_not_train():
    """model.freeze: no gradients and eval mode for the named parts even when the codec trains
    (so the codebooks' EMA and dead-code replacement leave them alone)."""
    cfg = tiny_config("hasrd")["model"]
    cfg.update(decoder=ISTFT_DECODER, freeze=["encoder", "quantizer", "semantic_head"])
    codec = build_codec(cfg).train()
    assert not codec.quantizer.training and not codec.encoder.training and codec.decoder.training
    assert all(not p.requires_grad for n, p in codec.named_parameters() if not n.startswith("decoder."))
    before = {k: v.clone() for k, v in codec.quantizer.state_dict().items()}
    out = codec(torch.cat([speechlike(0.4, seed=s) for s in range(4)]))
    out.audio.pow(2).mean().backward()
    assert all(torch.equal(before[k], v) for k, v in codec.quantizer.state_dict().items())
    assert all(p.grad is not None for p in codec.decoder.parameters())
    cfg["freeze"] = ["vocoder"]
    with pytest.raises(ValueError, match="unknown parts"):
        build_codec(cfg)
