"""The encoder-side pitch tracker (hasrd/pitch/track.py): F0 and voicing at the codec's frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hasrd.pitch.track import track

SR, HOP = 16000, 320


def harmonic(f0, seconds, harmonics=12, level=0.3):
    """A harmonic tone with the instantaneous F0 ``f0(t)`` (a constant or an array per sample)."""
    n = int(seconds * SR)
    f0 = np.broadcast_to(np.asarray(f0, float), (n,))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.cos(k * phase) / k for k in range(1, harmonics + 1))
    return (level * x / np.abs(x).max()).astype(np.float32)


def centres(frames):
    return (np.arange(frames) * HOP + HOP / 2) / SR


def test_a_glide_is_tracked_within_a_few_cents():
    seconds = 1.5
    t = np.arange(int(seconds * SR)) / SR
    law = lambda t: 90.0 * 2 ** (1.5 * t / seconds)  # noqa: E731  # 90 -> 255 Hz, 1.5 octaves
    f0, voicing = track(harmonic(law(t), seconds), SR, HOP)
    assert f0.shape == voicing.shape == (75,)
    assert f0.dtype == voicing.dtype == np.float32
    inner = slice(2, -2)  # frames whose analysis window lies inside the clip
    assert (voicing[inner] > 0.9).all(), voicing
    cents = 1200 * np.abs(np.log2(f0[inner] / law(centres(75)[inner])))
    assert np.median(cents) < 3 and cents.max() < 10, cents


@pytest.mark.parametrize("f0", [65.0, 140.0, 420.0])
def test_a_steady_voice_across_the_range(f0):
    est, voicing = track(harmonic(f0, 0.6), SR, HOP)
    inner = slice(2, -2)
    assert (voicing[inner] > 0.9).all()
    assert (1200 * np.abs(np.log2(est[inner] / f0))).max() < 10


def test_silence_and_white_noise_are_unvoiced():
    rng = np.random.default_rng(0)
    silence = np.zeros(SR, np.float32)
    noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    f0, voicing = track(np.stack([silence, noise]), SR, HOP)
    assert voicing.shape == (2, 50)
    assert (voicing < 0.5).all(), voicing
    assert (voicing[0] == 0).all()
    # the contour is still defined: a constant in the range for a clip with no voiced frame
    assert np.isfinite(f0).all() and (f0 >= 50).all() and (f0 <= 500).all()
    assert np.allclose(f0, f0[:, :1])


def test_unvoiced_gaps_get_an_interpolated_f0():
    # voice at 120 Hz, a silent gap, voice at 240 Hz: the gap's F0 runs from one to the other
    x = np.concatenate([harmonic(120.0, 0.4), np.zeros(int(0.4 * SR), np.float32), harmonic(240.0, 0.4)])
    f0, voicing = track(x, SR, HOP)
    voiced = voicing > 0.5
    assert voiced[2:17].all() and not voiced[24:36].any() and voiced[43:58].all()
    gap = f0[22:38]
    assert (np.diff(gap) >= -1e-3).all() and gap.min() >= 115 and gap.max() <= 250
    assert np.isfinite(f0).all() and (f0 > 0).all()


@pytest.mark.parametrize("length", [1, 319, 320, 321, 4801])
def test_frame_count_for_odd_lengths(length):
    x = harmonic(150.0, length / SR + 1e-9)[:length]
    f0, voicing = track(x, SR, HOP)
    frames = -(-length // HOP)
    assert f0.shape == voicing.shape == (frames,)
    assert np.isfinite(f0).all() and ((voicing >= 0) & (voicing <= 1)).all()


def test_batches_and_tensors_match_single_clips():
    a, b = harmonic(110.0, 0.5), harmonic(300.0, 0.5)
    batch = torch.from_numpy(np.stack([a, b]))
    f0, voicing = track(batch, SR, HOP)
    assert isinstance(f0, torch.Tensor) and f0.shape == voicing.shape == (2, 25)
    for i, clip in enumerate((a, b)):
        f1, v1 = track(clip, SR, HOP)
        np.testing.assert_allclose(f0[i].numpy(), f1, rtol=1e-4)
        np.testing.assert_allclose(voicing[i].numpy(), v1, atol=1e-5)
    # a hop other than the codec's, and an empty clip
    f0, voicing = track(batch, SR, 160)
    assert f0.shape == (2, 50)
    f0, voicing = track(np.zeros(0, np.float32), SR, HOP)
    assert f0.shape == voicing.shape == (0,)


def test_rejects_other_shapes():
    with pytest.raises(ValueError):
        track(np.zeros((1, 1, 320), np.float32), SR, HOP)
