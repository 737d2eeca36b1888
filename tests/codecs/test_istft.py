"""The frame-rate iSTFT generator (decoder type ``istft``): exact inverse STFT, shapes, refusals,
the codec around it (traced inference path, ONNX export, frozen parts while training)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hasrd.codecs import build_codec
from hasrd.decoders import IstftGenerator, build_generator
from hasrd.decoders.istft import OverlapAddISTFT, aligned_stft
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


@pytest.mark.parametrize("decoder", [{}, {"upsample": 2}, {"phase": "integrated"}, {"source": "harmonic"},
                                     {"source": "harmonic", "aperiodic": "phase"}])
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
    long_codes = codec.encode(speechlike(2.5, seed=6))  # longer than the harmonic source's noise table
    eager_long = codec.decode(long_codes)
    codec.prepare_for_inference()
    assert (codec.encode(x) == codes).all()
    # a pulse train's closed form divides by sin(phase / 2): the traced graph's rounding differs
    # more, near the pulses (seen: 7e-5 on 1 sample in 40000 with the pulses at full share)
    atol = 2e-4 if decoder.get("source") else 1e-5
    torch.testing.assert_close(codec.decode(codes), eager, atol=atol, rtol=0)
    assert codec.__dict__.get("_traced_decoder") not in (None, False)
    torch.testing.assert_close(codec.decode(codec.encode(other)), eager_other, atol=atol, rtol=0)
    torch.testing.assert_close(codec.decode(long_codes), eager_long, atol=atol, rtol=0)


@pytest.mark.parametrize("decoder", [{}, {"upsample": 2}, {"phase": "integrated", "upsample": 2},
                                     {"source": "harmonic", "upsample": 2},
                                     {"source": "harmonic", "aperiodic": "phase", "upsample": 2}])
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


def _tone_through_integrated_head(freq, sr=16000, hop=320, frames=60):
    """Drive an ``integrated`` head by hand: the magnitudes of a pure tone's STFT and, for the
    bins of its main lobe, the deviation that names the tone's frequency. Returns (output, tone)."""
    gen = IstftGenerator(4, hop=hop, dim=8, layers=1, phase="integrated")
    n_fft = gen.istft.n_fft
    t = torch.arange(frames * hop, dtype=torch.float64) / sr
    tone = torch.cos(2 * math.pi * freq * t).float()
    mag = torch.stft(tone, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()[:, :frames]
    k = torch.arange(gen.n_bins, dtype=torch.float64)[:, None]
    offset_bins = (freq * n_fft / sr - k).expand(-1, frames)
    lobe = offset_bins.abs() < 3
    deviation = torch.where(lobe, torch.atanh((offset_bins / gen.MAX_IF_BINS).clamp(-0.999, 0.999)),
                            torch.zeros(()))
    phase = gen._integrate(deviation[None].float())
    spec = torch.cat([mag * torch.cos(phase[0]), mag * torch.sin(phase[0])])[None]
    return gen.istft(spec)[0, 0], tone


@pytest.mark.parametrize("freq", [1010.0, 233.3])
def test_integrated_phase_rebuilds_a_steady_tone(freq):
    """phase: integrated. Given a tone's magnitudes and its frequency as the bins' deviation, the
    head makes that tone, coherent from frame to frame: away from the edges the output is a
    sinusoid of the tone's frequency and amplitude (fitted, < 1 % residual energy). (Dropping the
    start-of-frame offset from the head fails this.)"""
    sr, hop = 16000, 320
    y, tone = _tone_through_integrated_head(freq)
    mid = slice(8 * hop, 52 * hop)
    t = torch.arange(y.numel(), dtype=torch.float64)[mid] / sr
    basis = torch.stack([torch.cos(2 * math.pi * freq * t), torch.sin(2 * math.pi * freq * t)], 1)
    fit = torch.linalg.lstsq(basis, y[mid].double()[:, None]).solution
    residual = y[mid].double() - (basis @ fit)[:, 0]
    assert residual.pow(2).sum() < 0.01 * y[mid].double().pow(2).sum()
    assert abs(float(fit.norm()) - 1.0) < 0.05  # the tone's amplitude


def test_integrated_phase_stays_exact_over_long_utterances():
    """The accumulated phase of a bin is its instantaneous frequency times the elapsed time, to
    1e-3 rad even after an hour of frames (float64 accumulation, wrapped; a float32 running sum
    is off by radians there)."""
    gen = IstftGenerator(4, hop=320, dim=8, layers=1, phase="integrated")
    frames = 180_000  # one hour at 50 Hz
    deviation = torch.full((1, gen.n_bins, frames), 0.3)
    phase = gen._integrate(deviation)[0]
    k = torch.arange(gen.n_bins, dtype=torch.float64)[:, None]
    deviation_bins = float((gen.MAX_IF_BINS * torch.tanh(torch.tensor(0.3))).double())  # the head's own float32 value
    turns_per_frame = (k + deviation_bins) * 320 / gen.istft.n_fft
    expected = 2 * math.pi * torch.remainder(turns_per_frame * torch.arange(1, frames + 1, dtype=torch.float64), 1.0)
    expected = expected - math.pi * (k % 2)
    diff = torch.remainder(phase.double() - expected + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-3


def test_integrated_phase_refusals():
    assert build_generator({"type": "istft", "dim": 8, "layers": 1, "phase": "integrated"}, 4, hop=320).phase == "integrated"
    with pytest.raises(ValueError, match="phase must be one of"):
        build_generator({"type": "istft", "phase": "random"}, 16, hop=320)


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


# ---------------------------------------------------------------- source: harmonic
def test_pulse_train_is_the_sum_of_the_harmonics_under_nyquist():
    from hasrd.decoders.istft import harmonic_pulses

    sr = 16000
    f0 = torch.linspace(90.0, 310.0, 4000).view(1, 1, -1)
    y = harmonic_pulses(f0, sr)[0, 0].double()
    phi = 2 * math.pi * torch.cumsum(f0[0, 0].double() / sr, 0)
    K = torch.floor(0.5 * sr / f0[0, 0].double() - 1e-3)
    ref = sum(torch.where(k <= K, torch.cos(k * phi), torch.zeros_like(phi)) for k in range(1, 90))
    torch.testing.assert_close(y, ref, atol=2e-3 * float(K.max()), rtol=0)
    # steady F0: energy at the harmonics only, none between them
    steady = harmonic_pulses(torch.full((1, 1, 16000), 200.0), sr)[0, 0]
    spec = torch.fft.rfft(steady * torch.hann_window(16000)).abs()
    assert spec[200 * 7] > 1000 * spec[200 * 7 + 100]


def test_source_stft_and_overlap_add_are_inverse():
    """The sources are analysed with the window and hop the inverse STFT uses: filtering by 1 is
    the identity (away from the edges), so the filters act on the sources and nothing else."""
    gen = IstftGenerator(4, hop=320, dim=8, layers=1, source="harmonic")
    x = torch.randn(2, 1, 40 * 320)
    spec = aligned_stft(x, gen.analysis, gen.istft.hop)
    assert spec.shape[-1] == 40
    y = gen.istft(spec)
    torch.testing.assert_close(y[..., 1280:-1280], x[..., 1280:-1280], atol=1e-4, rtol=0)


def _forced_harmonic_decoder(f0, voiced_logit=8.0, share_logit=8.0, aperiodic="noise"):
    """A harmonic decoder whose heads ignore the input: F0 ``f0``, a magnitude falling by about
    50 dB from 0 to 8 kHz (a voice's tilt: a flat spectrum of equal pulses at a period that is not
    a whole number of samples misleads pYIN by an octave); with ``aperiodic: phase`` the share
    head's logit is ``share_logit`` and the head's phase half a fixed random phase per bin."""
    from hasrd.losses.pitch import FMAX, FMIN

    gen = IstftGenerator(4, hop=320, dim=8, layers=1, source="harmonic", aperiodic=aperiodic).eval()
    with torch.no_grad():
        lin = gen.pitch_head[1]
        lin.weight.zero_()
        u = math.log(f0 / FMIN) / math.log(FMAX / FMIN)
        lin.bias.copy_(torch.tensor([math.log(u / (1 - u)), voiced_logit]))
        gen.head.weight.zero_()
        tilt = -6.0 * torch.arange(gen.n_bins) / gen.n_bins
        if aperiodic == "phase":
            gen.share_head.weight.zero_()
            gen.share_head.bias.fill_(share_logit)
            second = torch.rand(gen.n_bins, generator=torch.Generator().manual_seed(1)) * 2 * math.pi
        else:
            second = torch.full((gen.n_bins,), share_logit)
        gen.head.bias.copy_(torch.cat([tilt, second]))
    return gen


@pytest.mark.parametrize("f0", [96.0, 183.0])
def test_harmonic_decoder_renders_the_pitch_it_predicts(f0):
    """The point of the source: the output's pitch (by the evaluator's own pYIN) is the pitch
    head's F0, not the 50 Hz frame rate, and its predictions come out for the pitch loss."""
    from hasrd.eval.metrics import pitch_track

    gen = _forced_harmonic_decoder(f0)
    z = torch.randn(1, 4, 50)
    with torch.no_grad():
        audio, pitch = gen(z, return_pitch=True)
    torch.testing.assert_close(pitch["f0"], torch.full((1, 50), f0), rtol=1e-4, atol=0)
    track, voiced = pitch_track(audio[0, 0, 3200:-3200].numpy(), 16000)
    assert voiced.mean() > 0.9
    assert np.nanmedian(1200 * np.abs(np.log2(track / f0))) < 10
    # unvoiced: no pulses, only the noise half is left (no pitch at all)
    silent = _forced_harmonic_decoder(f0, voiced_logit=-30.0)
    with torch.no_grad():
        _, voiced = pitch_track(silent(z)[0, 0, 3200:-3200].numpy(), 16000)
    assert voiced.mean() < 0.2


@pytest.mark.parametrize("f0", [96.0, 183.0])
def test_phase_aperiodic_decoder_renders_the_pitch_where_its_share_is_high(f0):
    """``aperiodic: phase``: with the share head saturated the output has the pitch head's F0;
    with it shut, no pitch (the head's own phase, fixed per bin, repeats every frame: pYIN then
    finds no voice in 96-183 Hz)."""
    from hasrd.eval.metrics import pitch_track

    z = torch.randn(1, 4, 50)
    with torch.no_grad():
        track, voiced = pitch_track(_forced_harmonic_decoder(f0, aperiodic="phase")(z)[0, 0, 3200:-3200].numpy(), 16000)
        assert voiced.mean() > 0.9
        assert np.nanmedian(1200 * np.abs(np.log2(track / f0))) < 10
        shut = _forced_harmonic_decoder(f0, share_logit=-30.0, aperiodic="phase")(z)[0, 0, 3200:-3200].numpy()
    track, voiced = pitch_track(shut, 16000)
    assert voiced.mean() < 0.5 or np.nanmedian(1200 * np.abs(np.log2(track[voiced] / f0))) > 100


def test_phase_aperiodic_decoder_warm_starts_from_the_decoder_without_a_source():
    """A warm start copies a source-less decoder's weights; the new share head starts at
    ``sigmoid(SHARE_BIAS)`` in every bin, and with the share shut the output is the old decoder's
    exactly (the head keeps its meaning)."""
    torch.manual_seed(0)
    plain = IstftGenerator(4, hop=320, dim=16, layers=2).eval()
    mixed = IstftGenerator(4, hop=320, dim=16, layers=2, source="harmonic", aperiodic="phase").eval()
    missing, unexpected = mixed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(mixed.warm_start_new) for k in missing)
    z = torch.randn(2, 4, 30)
    with torch.no_grad():
        share = torch.sigmoid(mixed.share_head(torch.randn(2, 30, 16)))
        torch.testing.assert_close(share, torch.full_like(share, 1 / (1 + math.exp(-mixed.SHARE_BIAS))))
        assert not torch.allclose(mixed(z), plain(z), atol=1e-3)
        mixed.share_head.bias.fill_(-30.0)
        torch.testing.assert_close(mixed(z), plain(z), atol=1e-6, rtol=0)


def test_harmonic_decoder_noise_is_fixed_in_eval_and_random_in_training():
    gen = _forced_harmonic_decoder(150.0, share_logit=-8.0)  # the noise half only
    z = torch.randn(1, 4, 20)
    assert torch.equal(gen(z), gen(z))
    gen.train()
    assert not torch.equal(gen(z), gen(z))


def test_harmonic_source_refusals():
    assert build_generator({"type": "istft", "dim": 8, "layers": 1, "source": "harmonic"}, 4, hop=320).source == "harmonic"
    with pytest.raises(ValueError, match="source must be one of"):
        build_generator({"type": "istft", "source": "glottal"}, 16, hop=320)
    with pytest.raises(ValueError, match="phase does not apply"):
        build_generator({"type": "istft", "source": "harmonic", "phase": "integrated"}, 16, hop=320)
    with pytest.raises(ValueError, match="aperiodic must be one of"):
        build_generator({"type": "istft", "source": "harmonic", "aperiodic": "glottal"}, 16, hop=320)
    with pytest.raises(ValueError, match="with source: harmonic only"):
        build_generator({"type": "istft", "aperiodic": "phase"}, 16, hop=320)
    with pytest.raises(ValueError, match="needs a decoder with source"):
        IstftGenerator(4, hop=320, dim=8, layers=1)(torch.randn(1, 4, 3), return_pitch=True)
    with pytest.raises(ValueError, match="needs a decoder with source"):
        IstftGenerator(4, hop=320, dim=8, layers=1)(torch.randn(1, 4, 3), pitch=(torch.ones(1, 3), torch.ones(1, 3)))
    with pytest.raises(ValueError, match="pitch_forcing applies to a decoder with source: harmonic only"):
        build_generator({"type": "istft", "pitch_forcing": True}, 16, hop=320)
    with pytest.raises(ValueError, match="pitch_forcing must be true or false"):
        build_generator({"type": "istft", "source": "harmonic", "pitch_forcing": "yes"}, 16, hop=320)
    cfg = tiny_config("hcodec")["model"]
    cfg["decoder"] = {**ISTFT_DECODER, "source": "harmonic"}
    with pytest.raises(ValueError, match="hasrd codec only"):
        build_codec(cfg)


def test_hasrd_training_forward_returns_the_pitch_predictions():
    codec = istft_codec(source="harmonic").train()
    out = codec(speechlike(0.4))
    assert set(out.pitch) == {"f0", "voiced_logit"}
    assert out.pitch["f0"].shape == out.pitch["voiced_logit"].shape == (1, out.codes.shape[-1])
    assert istft_codec()(speechlike(0.4)).pitch == {}


@pytest.mark.parametrize("aperiodic", ["noise", "phase"])
def test_given_pitch_drives_the_sources_and_the_head_still_reports_its_own(aperiodic):
    from hasrd.eval.metrics import pitch_track

    gen = _forced_harmonic_decoder(300.0, aperiodic=aperiodic)
    z = torch.randn(1, 4, 50)
    given = (torch.full((1, 50), 150.0), torch.full((1, 50), 5.0))
    with torch.no_grad():
        audio, pitch = gen(z, return_pitch=True, pitch=given)
        plain = gen(z)
    torch.testing.assert_close(pitch["f0"], torch.full((1, 50), 300.0), rtol=1e-4, atol=0)  # the head's own
    f_given, v_given = pitch_track(audio[0, 0, 3200:-3200].numpy(), 16000)
    f_plain, _ = pitch_track(plain[0, 0, 3200:-3200].numpy(), 16000)
    assert v_given.mean() > 0.9
    assert abs(np.nanmedian(f_given) - 150) < 8 and abs(np.nanmedian(f_plain) - 300) < 15


def test_pitch_forcing_trains_on_the_inputs_pitch_and_decodes_with_the_heads():
    """decoder.pitch_forcing: in training mode the codec drives the pulses with the input's YIN F0;
    in eval mode (and in decode) with the pitch head's prediction."""
    from hasrd.eval.metrics import pitch_track
    from hasrd.losses.pitch import FMAX, FMIN

    codec = istft_codec(source="harmonic", pitch_forcing=True)
    dec = codec.decoder
    assert dec.pitch_forcing
    with torch.no_grad():  # the head says 300 Hz, fully voiced, all pulses, whatever the codes
        lin = dec.pitch_head[1]
        lin.weight.zero_()
        u = math.log(300.0 / FMIN) / math.log(FMAX / FMIN)
        lin.bias.copy_(torch.tensor([math.log(u / (1 - u)), 8.0]))
        dec.head.weight.zero_()
        dec.head.bias.copy_(torch.cat([-6.0 * torch.arange(dec.n_bins) / dec.n_bins, torch.full((dec.n_bins,), 8.0)]))
    x = speechlike(2.0)  # F0 110 +- 30 Hz
    mid = slice(3200, -3200)
    f_x, v_x = pitch_track(x[0, 0, mid].numpy(), 16000)
    with torch.no_grad():
        trained = codec.train()(x)
        evaluated = codec.eval()(x)
    assert torch.allclose(trained.pitch["f0"], evaluated.pitch["f0"])  # the head's prediction either way
    f_t, v_t = pitch_track(trained.audio[0, 0, mid].numpy(), 16000)
    f_e, _ = pitch_track(evaluated.audio[0, 0, mid].numpy(), 16000)
    both = v_x & v_t
    assert both.mean() > 0.5 and np.median(np.abs(1200 * np.log2(f_t[both] / f_x[both]))) < 50
    assert abs(np.nanmedian(f_e) - 300) < 15
