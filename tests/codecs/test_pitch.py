"""The pitch-stream codec: codebook layout, the round trip through token files, the latent view,
the decoded F0 (rendered by the synthesiser) and the pitch shift."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hasrd.codecs import PitchCodec, build_codec
from hasrd.pitch.quant import PitchCodebook
from hasrd.pitch.track import track
from tests.conftest import speechlike, tiny_config


@pytest.fixture(scope="module")
def codec() -> PitchCodec:
    torch.manual_seed(0)
    cfg = {"name": "pitch", "sample_rate": 16000, "base": tiny_config("hasrd")["model"],
           "envelope": {"hidden": 16, "layers": 1, "kernel": 3}, "synth": {"n_bands": 16, "n_fft": 512}}
    codec = build_codec(cfg).eval()
    with torch.no_grad():  # an untrained envelope at a speech-like level (no clipping in a wav file)
        codec.envelope.out.bias.fill_(-9.0)
    return codec


def cents_apart(a: np.ndarray, b: np.ndarray) -> float:
    """Median F0 interval from ``a`` to ``b`` (cents) over the frames voiced in both."""
    fa, va = track(a, 16000, 320)
    fb, vb = track(b, 16000, 320)
    both = (va > 0.5) & (vb > 0.5)
    assert both.sum() >= 10
    return float(np.median(1200 * np.log2(fb[both] / fa[both])))


def test_codebooks_are_semantic_pitch_then_acoustic(codec):
    base = codec.base
    assert codec.num_codebooks == base.num_codebooks + 1
    assert codec.codebook_sizes == [base.codebook_sizes[0], 1024, *base.codebook_sizes[1:]]
    assert codec.bitrate(2) == pytest.approx(base.bitrate(1) + 500.0)  # 10 bits at 50 Hz
    assert codec.latent_dim == base.latent_dim + 2


def test_the_pitch_codebook_round_trips_within_its_step():
    book = PitchCodebook()
    f0 = torch.tensor([60.0, 100.0, 151.3, 220.0, 449.0])
    v = torch.tensor([0.0, 1.0, 0.5, 0.9, 1.0])
    f0_hat, v_hat = book.decode(book.encode(f0, v))
    cents = 1200 * torch.log2(f0_hat / f0).abs()
    assert float(cents.max()) <= 14.0  # half a step of 27 cents
    assert torch.allclose(v_hat, torch.round(v * 7) / 7)
    with pytest.raises(ValueError):
        book.decode(torch.tensor([book.size]))


def test_codes_round_trip_through_a_token_file(codec, tmp_path):
    from hasrd.io.tokenfile import load_tokens, save_tokens, token_meta

    x = speechlike(0.6)
    codes = codec.encode(x, 3)
    assert codes.shape == (1, 3, codec.num_frames(x.shape[-1]))
    save_tokens(tmp_path / "a.hsrd", codes[0].numpy(), token_meta(codec, x.shape[-1], 16000))
    back, meta = load_tokens(tmp_path / "a.hsrd")
    assert np.array_equal(back, codes[0].numpy()) and meta["codebook_sizes"][:3] == codec.codebook_sizes[:3]
    assert torch.equal(codec.decode(torch.from_numpy(back)[None]), codec.decode(codes))


@pytest.mark.parametrize("n_q", [1, 2, 3])
def test_the_latent_view_agrees_with_the_codes(codec, n_q):
    x = speechlike(0.4)
    want = codec.decode(codec.encode(x, n_q))
    got = codec.decode_latent(codec.encode_to_latent(x, quantize=True, n_q=n_q))
    assert torch.equal(want, got)


def test_the_decoder_renders_the_transmitted_pitch_and_the_shift_moves_it(codec):
    x = speechlike(1.0)  # a voiced harmonic signal with a moving F0
    codes = codec.encode(x, 3)
    y = codec.decode(codes)[0, 0].numpy()
    assert abs(cents_apart(x[0, 0].numpy(), y)) < 20  # the pitch is rendered (an untrained envelope)
    up = codec.decode(codec.shift_pitch(codes, 5.0))[0, 0].numpy()
    moved = cents_apart(y, up)
    assert abs(moved - 500) < 30, moved
    with pytest.raises(ValueError, match="no pitch stream"):
        codec.shift_pitch(codes[:, :1], 2.0)


def test_the_training_forward_regresses_the_envelope_only(codec):
    codec.train()
    try:
        out = codec(speechlike(0.5).repeat(2, 1, 1))
    finally:
        codec.eval()
    assert out.audio is None and set(out.losses) == {"env"} and out.losses["env"].requires_grad
    out.losses["env"].backward()
    assert all(p.grad is None for p in codec.base.parameters())
    assert any(p.grad is not None for p in codec.envelope.parameters())


def test_hasrd_decode_pitch_shift_moves_the_voice_and_is_refused_elsewhere(codec, tmp_path, capsys):
    import soundfile as sf

    from hasrd.cli import main

    model = tmp_path / "pitch_model"
    codec.save_pretrained(model)
    x = speechlike(1.0)[0, 0].numpy()
    sf.write(tmp_path / "in.wav", x, 16000)
    assert main(["encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "in.hsrd"), "--model", str(model), "--n-q", "3"]) == 0
    assert main(["decode", str(tmp_path / "in.hsrd"), "-o", str(tmp_path / "plain.wav"), "--model", str(model)]) == 0
    assert main(["decode", str(tmp_path / "in.hsrd"), "-o", str(tmp_path / "up.wav"), "--model", str(model),
                 "--pitch-shift", "-7"]) == 0
    plain, up = sf.read(tmp_path / "plain.wav")[0], sf.read(tmp_path / "up.wav")[0]
    assert abs(cents_apart(plain, up) + 700) < 30
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "in.hsrd"), "-o", str(tmp_path / "x.wav"), "--model", str(model),
                 "--pitch-shift", "99"]) == 2
    assert main(["decode", str(tmp_path / "in.hsrd"), "-o", str(tmp_path / "y.wav"), "--model", "default",
                 "--pitch-shift", "2"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 2 and "-24..24" in err[0] and "pitch stream" in err[1], err
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "y.wav").exists()


def test_the_base_envelope_source_renders_the_base_decoders_envelope_at_the_sent_pitch():
    """``envelope.source: base``: no envelope network; the synthesiser takes the envelope of the
    base codec's own decoded audio and renders the transmitted pitch through it (nothing to train)."""
    torch.manual_seed(0)
    cfg = {"name": "pitch", "sample_rate": 16000, "base": tiny_config("hasrd")["model"],
           "envelope": {"source": "base"}, "synth": {"n_bands": 16, "n_fft": 512}}
    codec = build_codec(cfg).eval()
    assert codec.envelope is None and not any(k.startswith("envelope.") for k in codec.state_dict())
    x = speechlike(0.5)
    y = codec.decode(codec.encode(x, 3))
    assert y.shape == (1, 1, codec.num_frames(x.shape[-1]) * codec.hop_length) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="nothing to train"):
        codec(x)
    with pytest.raises(ValueError, match="envelope.source"):
        build_codec({**cfg, "envelope": {"source": "lpc"}})
