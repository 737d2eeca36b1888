"""The harmonic-plus-noise synthesiser: the F0 it is given is the F0 it renders; its analysis
reads back the power it was given."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hasrd.pitch.synth import HarmonicNoiseSynth, band_edges
from hasrd.pitch.track import track


def speech_tilt(frames: int, n_bands: int = 32) -> torch.Tensor:
    """A speech-like envelope: power falling 12 dB per octave above 200 Hz. (A flat envelope
    renders needle pulses whose samples repeat only every few periods when the period is not a
    whole number of samples, which fools sample-lag trackers into a subharmonic.)"""
    edges = band_edges(16000, n_bands)
    centres = torch.tensor(0.5 * (edges[:-1] + edges[1:]), dtype=torch.float32)
    return (1e-3 * (200.0 / centres.clamp(min=200.0)) ** 4).expand(1, frames, n_bands).clone()


@pytest.mark.parametrize("f0", [90.0, 150.0, 260.0])
def test_the_rendered_f0_is_the_given_one(f0):
    synth = HarmonicNoiseSynth(16000, 320, n_bands=32)
    frames = 80
    env = speech_tilt(frames)
    y = synth(torch.full((1, frames), f0), env, torch.zeros_like(env))[0, 0].numpy()
    measured, voicing = track(y, 16000, 320)
    inner = slice(5, -5)
    assert np.all(voicing[inner] > 0.5)
    cents = 1200 * np.log2(measured[inner] / f0)
    assert np.median(np.abs(cents)) < 10, np.median(np.abs(cents))


def test_a_glide_is_followed():
    synth = HarmonicNoiseSynth(16000, 320, n_bands=32)
    f0 = torch.linspace(110.0, 220.0, 100)[None]
    env = speech_tilt(100)
    y = synth(f0, env, torch.zeros_like(env))[0, 0].numpy()
    measured, _ = track(y, 16000, 320)
    cents = 1200 * np.log2(measured[5:-5] / f0[0, 5:-5].numpy())
    assert np.median(np.abs(cents)) < 15


def test_noise_analysis_reads_back_the_power_it_was_given():
    synth = HarmonicNoiseSynth(16000, 320, n_bands=24)
    env = torch.full((1, 100, 24), 2e-4)
    y = synth(torch.full((1, 100), 120.0), torch.zeros_like(env), env)[:, 0]
    got = synth.analyse(y)[0, 10:-10].mean(0) / 2e-4
    assert torch.allclose(got, torch.ones_like(got), atol=0.2), got


def test_band_edges_cover_the_band_with_a_minimum_width():
    edges = band_edges(16000, 32, min_width=100.0)
    assert edges[0] == 0 and edges[-1] == 8000 and len(edges) == 33
    assert np.all(np.diff(edges) >= 100.0 - 1e-6)
