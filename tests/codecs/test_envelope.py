"""The envelope codec (the spectral envelope as tokens, semantic codebook first) alone and as the
pitch codec's trainable base: layout, the latent view, what training updates, what it learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hasrd.codecs import EnvelopeCodec, PitchCodec, build_codec
from hasrd.pitch.track import track
from tests.conftest import speechlike

TINY_ENVELOPE = {"name": "envelope", "sample_rate": 16000, "hop": 320, "latent_dim": 16,
                 "net": {"hidden": 32, "layers": 1, "kernel": 3}, "synth": {"n_bands": 16, "n_fft": 512},
                 "quantizer": {"n_semantic": 1, "n_acoustic": 2, "codebook_size": 64, "dropout": 0.5,
                               "kmeans_init": False},
                 "semantic_head": {"dim": 13, "n_units": 8}}


def tiny_pitch(**extra) -> PitchCodec:
    torch.manual_seed(0)
    return build_codec({"name": "pitch", "sample_rate": 16000, "train_base": True, "base": dict(TINY_ENVELOPE),
                        "envelope": {"source": "base"}, "synth": {"n_bands": 16, "n_fft": 512}, **extra})


def test_the_envelope_codec_alone_decodes_noise_through_its_envelope():
    torch.manual_seed(0)
    codec = build_codec(TINY_ENVELOPE).eval()
    assert isinstance(codec, EnvelopeCodec) and codec.codebook_sizes == [64, 64, 64]
    x = speechlike(0.5)
    codes = codec.encode(x, 2)
    assert codes.shape == (1, 2, codec.num_frames(x.shape[-1]))
    y = codec.decode(codes)
    assert y.shape == (1, 1, codes.shape[-1] * 320) and torch.isfinite(y).all()
    assert torch.equal(y, codec.decode_latent(codec.encode_to_latent(x, quantize=True, n_q=2)))
    # no pitch was sent: the output is unvoiced (the tracker finds (almost) no voiced frame)
    _, voicing = track(y[0, 0].numpy(), 16000, 320)
    assert float(np.mean(voicing > 0.5)) < 0.2


def test_the_pitch_codec_on_an_envelope_codec_trains_the_base_and_puts_the_pitch_second():
    codec = tiny_pitch()
    assert codec.codebook_sizes == [64, 1024, 64, 64] and codec.num_semantic_codebooks == 1
    codec.train()
    out = codec(speechlike(0.6).repeat(3, 1, 1))
    assert out.audio is None and set(out.losses) == {"env", "vq"}
    assert set(out.semantic) == {"features", "unit_logits"}  # the teacher's loss reaches codebook 1
    assert out.codes.shape[1] == 4 and bool(((out.n_q >= 2) & (out.n_q <= 4)).all())
    f0, voicing = track(speechlike(0.6)[0, 0].numpy(), 16000, 320)
    want = codec.pitch_book.encode(torch.as_tensor(f0).float(), torch.as_tensor(voicing).float())
    assert torch.equal(out.codes[0, 1], want[: out.codes.shape[-1]])
    (out.losses["env"] + out.semantic["features"].mean()).backward()
    assert codec.base.encoder.inp.weight.grad is not None and codec.base.decoder.out.weight.grad is not None
    assert codec.base.semantic_head.features.weight.grad is not None


def test_training_the_envelope_codec_lowers_its_envelope_error():
    codec = tiny_pitch()
    x = torch.cat([speechlike(0.6, seed=s) for s in range(4)])
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    codec.train()
    losses = []
    for _ in range(40):
        out = codec(x, n_q=4)
        loss = out.losses["env"] + out.losses["vq"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(out.losses["env"]))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_the_decoded_voice_has_the_sent_pitch():
    codec = tiny_pitch().eval()
    x = speechlike(1.0)
    codes = codec.encode(x, 3)
    y = codec.decode(codes)[0, 0].numpy()
    fx, vx = track(x[0, 0].numpy(), 16000, 320)
    fy, vy = track(y, 16000, 320)
    both = (vx > 0.5) & (vy > 0.5)
    assert both.sum() >= 10 and abs(float(np.median(1200 * np.log2(fy[both] / fx[both])))) < 20
    assert torch.equal(codec.decode(codes), codec.decode_latent(codec.encode_to_latent(x, quantize=True, n_q=3)))
    whisper = codec.decode(codes[:, :1])  # the semantic codebook alone: the envelope codec's own decoding
    assert whisper.shape == (1, 1, codes.shape[-1] * 320)


def test_train_base_is_refused_where_it_cannot_mean_anything():
    from tests.conftest import tiny_config

    with pytest.raises(ValueError, match="envelope codec"):
        build_codec({"name": "pitch", "sample_rate": 16000, "train_base": True, "base": tiny_config("hasrd")["model"],
                     "envelope": {"source": "base"}})
    with pytest.raises(ValueError, match="source: base"):
        tiny_pitch(envelope={"source": "residual", "hidden": 8, "layers": 1, "kernel": 3})


def test_render_in_training_gives_the_waveform_losses_a_path_into_the_envelope_codec():
    codec = tiny_pitch(render_in_training=True)
    codec.train()
    x = speechlike(0.61).repeat(2, 1, 1)  # not a whole number of frames: the audio keeps the input's length
    out = codec(x)
    assert out.audio is not None and out.audio.shape == x.shape
    (out.audio - x).abs().mean().backward()
    assert codec.base.decoder.out.weight.grad is not None and codec.base.encoder.inp.weight.grad is not None
    from hasrd.train.warm_start import architecture

    assert architecture(codec.config) == architecture(tiny_pitch().config)  # a training-only switch


def test_a_pitch_codec_warm_starts_from_a_saved_one_with_rendering_switched_on(tmp_path):
    from hasrd.train.warm_start import warm_start

    trained = tiny_pitch()
    trained.save_pretrained(tmp_path / "saved")
    fresh = tiny_pitch(render_in_training=True)
    with torch.no_grad():
        fresh.base.decoder.out.weight.add_(1.0)
    loaded = warm_start(fresh, tmp_path / "saved", say=lambda *_: None)
    assert "base.decoder.out.weight" in loaded
    assert torch.equal(fresh.base.decoder.out.weight, trained.base.decoder.out.weight)


def test_loss_bands_weigh_the_bands_and_leave_the_architecture_alone():
    """``loss_bands``: an error only in bands outside low_hz..high_hz costs ``outside`` times as much;
    a run may warm-start across the setting (a training knob, not an architecture)."""
    from hasrd.pitch.envelope import envelope_loss
    from hasrd.train.warm_start import architecture

    torch.manual_seed(0)
    weighted = build_codec({**TINY_ENVELOPE, "loss_bands": {"low_hz": 150, "high_hz": 4300, "outside": 0.25}})
    w = weighted.loss_band_weight
    assert w is not None and set(w.unique().tolist()) == {0.25, 1.0} and w[0] == 0.25 and w[-1] == 0.25
    target = torch.full((1, 4, 16), -5.0)
    high = target.clone()
    high[..., w < 1] += 1.0  # wrong only outside the band
    low = target.clone()
    low[..., w == 1] += 1.0  # wrong only inside
    assert envelope_loss(high, target, 50.0) == pytest.approx(float((w < 1).float().mean()))
    assert envelope_loss(high, target, 50.0, w) == pytest.approx(0.25 * float((w < 1).sum()) / float(w.sum()))
    assert envelope_loss(low, target, 50.0, w) > envelope_loss(low, target, 50.0)
    assert architecture(TINY_ENVELOPE) == architecture(weighted.config)
    assert architecture({"name": "pitch", "base": TINY_ENVELOPE}) == \
        architecture({"name": "pitch", "base": weighted.config})
    with pytest.raises(ValueError, match="loss_bands"):
        build_codec({**TINY_ENVELOPE, "loss_bands": {"low": 150}})


def test_the_decoder_reading_the_sent_pitch_warm_starts_from_one_that_did_not(tmp_path):
    """``pitch_input``: the envelope decoder reads the F0 and voicing the codes send; a model
    warm-started from one without it decodes exactly as that one did (the new input weights start
    at zero), and training reaches them."""
    from hasrd.train.warm_start import warm_start

    old = tiny_pitch().eval()
    old.save_pretrained(tmp_path / "old")
    torch.manual_seed(1)
    new = build_codec({"name": "pitch", "sample_rate": 16000, "train_base": True,
                       "base": {**TINY_ENVELOPE, "pitch_input": True}, "envelope": {"source": "base"},
                       "synth": {"n_bands": 16, "n_fft": 512}})
    assert new.base.decoder.inp.weight.shape[1] == old.base.decoder.inp.weight.shape[1] + 2
    x = speechlike(0.6)
    codes = old.encode(x, 3)
    warm_start(new, tmp_path / "old", say=lambda *_: None)
    new.eval()
    assert torch.equal(new.encode(x, 3), codes)
    assert torch.allclose(new.decode(codes), old.decode(codes), atol=1e-5)
    # training: the loss reaches the pitch inputs' weights, which then make the pitch matter
    new.train()
    out = new(x.repeat(2, 1, 1))
    out.losses["env"].backward()
    assert new.base.decoder.inp.weight.grad[:, -2:].abs().sum() > 0
    with torch.no_grad():
        new.base.decoder.inp.weight[:, -2:].normal_()
    new.eval()
    z = new.base.codes_to_latent(codes[:, [0, 2]])
    f0 = torch.full((1, z.shape[-1]), 120.0)
    low = new.base.log_envelope(z, torch.stack([torch.log2(f0 / 150), torch.ones_like(f0)], 1))
    high = new.base.log_envelope(z, torch.stack([torch.log2(2 * f0 / 150), torch.ones_like(f0)], 1))
    assert not torch.allclose(low, high)
