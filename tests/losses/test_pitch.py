"""Pitch targets (batched torch YIN) and the pitch losses of decoders that render pitch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hasrd.losses.pitch import pitch_losses, yin_track

SR, HOP = 16000, 320


def tone(f0, seconds=0.6, harmonics=10, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    f0 = np.broadcast_to(np.asarray(f0, float), t.shape)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.cos(k * phase) / k for k in range(1, harmonics + 1))
    return torch.from_numpy(0.1 * x / np.abs(x).max()).float()


@pytest.mark.parametrize("f0", [70.0, 131.0, 240.0, 410.0])
def test_yin_finds_the_f0_of_a_steady_voice(f0):
    est, voiced = yin_track(tone(f0)[None], SR, HOP)
    assert est.shape == voiced.shape == (1, 30)
    inner = slice(2, -2)  # the frames whose window lies inside the signal
    assert voiced[0, inner].all()
    cents = 1200 * torch.log2(est[0, inner] / f0).abs()
    assert cents.max() < 5, cents


def test_yin_follows_a_gliding_f0_in_a_batch():
    t = np.arange(int(0.8 * SR)) / SR
    glide = 120 + 60 * t / 0.8
    batch = torch.stack([tone(glide, 0.8), tone(200.0, 0.8)])
    est, voiced = yin_track(batch.unsqueeze(1), SR, HOP)  # [B, 1, T] works too
    centres = (np.arange(est.shape[1]) * HOP + HOP // 2) / SR
    expect = torch.from_numpy(120 + 60 * centres / 0.8).float()
    inner = slice(2, -2)
    assert voiced[:, inner].all()
    assert (1200 * torch.log2(est[0, inner] / expect[inner]).abs()).max() < 15
    assert (1200 * torch.log2(est[1, inner] / 200.0).abs()).max() < 5


def test_yin_calls_noise_and_silence_unvoiced():
    g = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn(1, 9600, generator=g)
    _, voiced = yin_track(noise, SR, HOP)
    assert voiced.float().mean() < 0.1
    # a voiced half then silence: the silent frames are unvoiced
    x = torch.cat([tone(150.0, 0.4), torch.zeros(6400)])[None]
    _, voiced = yin_track(x, SR, HOP)
    assert voiced[0, 2:15].all() and not voiced[0, 23:].any()


def test_yin_agrees_with_the_evaluators_pyin_on_real_speech():
    """The training targets and the evaluator's F0 column measure the same thing."""
    from hasrd.eval.data import DEFAULT_EVAL_DIR
    from hasrd.eval.metrics import pitch_track
    from hasrd.io.audio import load_audio

    audio, _ = load_audio(DEFAULT_EVAL_DIR / "cmu_cards_002.wav", sample_rate=SR)
    y = audio[0]
    est, voiced = yin_track(torch.from_numpy(np.asarray(y, np.float32))[None], SR, HOP)
    ref_f0, ref_voiced = pitch_track(y, SR)  # every 10 ms: frames 1, 3, 5 ... are centred as ours
    ref_f0, ref_voiced = ref_f0[1::2], ref_voiced[1::2]
    n = min(len(ref_f0), est.shape[1])
    est, voiced, ref_f0, ref_voiced = est[0, :n].numpy(), voiced[0, :n].numpy(), ref_f0[:n], ref_voiced[:n]
    both = voiced & ref_voiced
    assert both.sum() > 20
    cents = 1200 * np.abs(np.log2(est[both] / ref_f0[both]))
    assert np.median(cents) < 20, np.median(cents)
    assert (voiced == ref_voiced).mean() > 0.75


def test_pitch_losses_measure_octaves_on_voiced_frames_only():
    target = torch.tensor([[100.0, 200.0, 300.0, 150.0]])
    voiced = torch.tensor([[True, True, False, True]])
    logits = torch.tensor([[8.0, 8.0, -8.0, 8.0]])
    exact = pitch_losses(target.clone(), logits, target, voiced)
    assert exact["f0"].item() == pytest.approx(0.0, abs=1e-6)
    assert exact["vuv"].item() < 1e-3
    wrong = target * torch.tensor([[2.0, 1.0, 4.0, 0.5]])  # an octave off on two of three voiced frames
    assert pitch_losses(wrong, logits, target, voiced)["f0"].item() == pytest.approx(2 / 3, abs=1e-5)
    assert pitch_losses(target, -logits, target, voiced)["vuv"].item() > 5
    # no voiced frame at all: the F0 term is 0, not NaN
    none = pitch_losses(wrong, logits, target, torch.zeros_like(voiced))
    assert none["f0"].item() == 0.0
