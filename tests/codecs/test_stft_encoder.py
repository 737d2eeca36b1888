"""The frame-rate STFT encoder (encoder type ``stft``): its spectrum is the STFT, each latent frame
sees only the samples of its own windows, refusals, and the codec around it (traced inference,
ONNX export, training from the shipped config)."""
from __future__ import annotations

import pytest
import torch

from hasrd.codecs import build_codec
from hasrd.codecs.parts import build_encoder
from hasrd.config import load_config
from hasrd.encoders import StftEncoder
from tests.conftest import ROOT, speechlike, tiny_config

STFT_ENCODER = {"type": "stft", "hop": 320, "stack": 2, "dim": 32, "hidden": 64, "layers": 2}


def stft_codec(**encoder):
    cfg = tiny_config("hasrd")["model"]
    cfg["encoder"] = {**STFT_ENCODER, **encoder}
    cfg["decoder"] = {"type": "istft", "dim": 32, "hidden": 64, "layers": 2}
    torch.manual_seed(0)
    return build_codec(cfg).eval()


@pytest.mark.parametrize("hop, stack, n_fft", [(320, 2, 640), (320, 1, 1280), (160, 4, 96)])
def test_spectrum_is_the_stft_centred_half_a_hop_on(hop, stack, n_fft):
    """STFT frame s is torch.stft's frame s of the signal advanced by half an STFT hop (zeros
    outside the signal), real parts then imaginary parts, every frame of the signal."""
    enc = StftEncoder(8, hop=hop, stack=stack, dim=8, layers=1, n_fft=n_fft)
    h = enc.stft_hop
    torch.manual_seed(0)
    x = torch.randn(2, 1, 12 * hop)
    x[..., : h // 2] = 0  # what the advanced signal drops
    spec = enc.spectrum(x)
    ref = torch.stft(x[:, 0, h // 2:], n_fft, h, window=torch.hann_window(n_fft), center=True,
                     pad_mode="constant", return_complex=True)
    assert spec.shape == (2, 2 * (n_fft // 2 + 1), 12 * stack) == (2, 2 * ref.shape[1], ref.shape[2])
    torch.testing.assert_close(spec, torch.cat([ref.real, ref.imag], dim=1), atol=1e-4, rtol=1e-4)


def test_features_are_log_magnitude_and_compressed_parts_stacked_in_time_order():
    enc = StftEncoder(8, hop=320, stack=2, dim=8, layers=1, n_fft=640, compress=0.5)
    x = speechlike(0.2)
    re, im = enc.spectrum(x).split(enc.n_bins, dim=1)
    mag = torch.sqrt(re ** 2 + im ** 2 + enc.EPS)
    feats = enc.features(x)  # [B, F, stack * 3K]
    assert feats.shape == (1, 10, 2 * 3 * enc.n_bins)
    K = enc.n_bins
    for s in (0, 1):  # latent frame 4 holds STFT frames 8 and 9, in that order
        block = feats[0, 4, s * 3 * K: (s + 1) * 3 * K]
        torch.testing.assert_close(block[:K], torch.log(mag[0, :, 8 + s]))
        torch.testing.assert_close(block[K: 2 * K], re[0, :, 8 + s] / mag[0, :, 8 + s].sqrt())
        torch.testing.assert_close(block[2 * K:], im[0, :, 8 + s] / mag[0, :, 8 + s].sqrt())


def test_a_latent_frame_sees_only_the_samples_under_its_windows():
    """Without ConvNeXt blocks (no context across frames), a click at the centre of frame 10
    (hop 320, STFT windows of 640 every 160 samples) changes frames 9, 10 and 11 only."""
    torch.manual_seed(0)
    enc = StftEncoder(8, hop=320, stack=2, dim=16, layers=0, n_fft=640).eval()
    x = 0.01 * torch.randn(1, 1, 20 * 320)
    clicked = x.clone()
    clicked[..., 10 * 320 + 160] += 1.0
    changed = (enc(clicked) - enc(x)).abs().amax(dim=1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [9, 10, 11]


def test_refusals():
    with pytest.raises(ValueError, match="looks ahead"):
        build_encoder(STFT_ENCODER, 16, causal=True)
    with pytest.raises(ValueError, match="unknown keys"):
        build_encoder({**STFT_ENCODER, "d_model": 4}, 16)
    with pytest.raises(ValueError, match="divisor"):
        build_encoder({**STFT_ENCODER, "stack": 3}, 16)
    with pytest.raises(ValueError, match="n_fft"):
        build_encoder({**STFT_ENCODER, "n_fft": 100}, 16)
    with pytest.raises(ValueError, match="compress"):
        build_encoder({**STFT_ENCODER, "compress": 0}, 16)
    with pytest.raises(ValueError, match="conv, stft or ssl"):
        build_encoder({"type": "mel"}, 16)


def test_codec_round_trip_and_traced_inference():
    codec = stft_codec()
    x = speechlike(0.5)
    codes = codec.encode(x)
    assert codes.shape[-1] == x.shape[-1] // 320
    audio = codec.decode(codes)
    assert audio.shape == (1, 1, codes.shape[-1] * 320) and torch.isfinite(audio).all()
    other = torch.cat([speechlike(0.3, seed=2), speechlike(0.3, seed=3)])
    other_codes = codec.encode(other)
    codec.prepare_for_inference()
    assert (codec.encode(x) == codes).all()
    assert (codec.encode(other) == other_codes).all()
    torch.testing.assert_close(codec.decode(codes), audio, atol=1e-5, rtol=0)


def test_onnx_export_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from hasrd.export import OnnxCodec, export_onnx

    codec = stft_codec()
    export_onnx(codec, tmp_path)  # runs its own onnxruntime-vs-torch check before writing
    x = speechlike(0.4, seed=5)
    onnx = OnnxCodec(tmp_path)
    assert (onnx.encode(x.numpy()) == codec.encode(x).numpy()).all()


def test_shipped_config_builds_with_the_stated_size():
    """codec_configs/hasrd_cpu_stft.yaml: an STFT encoder and an iSTFT decoder of 50 Hz frames,
    15.7 M parameters as its header says."""
    cfg = load_config(ROOT / "codec_configs" / "hasrd_cpu_stft.yaml")
    codec = build_codec(cfg["model"])
    assert isinstance(codec.encoder, StftEncoder) and codec.hop_length == 320
    assert round(sum(p.numel() for p in codec.parameters()) / 1e6, 1) == 15.7
