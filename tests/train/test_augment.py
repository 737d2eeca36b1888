"""Recording-channel augmentation: each stage does what it says, draws are reproducible, bad
settings are one clear error."""
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from hasrd.io.manifest import Entry
from hasrd.train.augment import ChannelAugment, peaking_biquad, synthetic_rir
from hasrd.train.data import CropConfig, CropDataset

SR = 16000


def noise(n=SR, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def band_energy(x, lo, hi):
    f, p = signal.welch(x, SR, nperseg=1024)
    return float(p[(f >= lo) & (f < hi)].sum())


def only(**kw):
    return ChannelAugment.from_config(kw)


def test_no_stage_on_is_the_identity_and_none_means_off():
    x = noise()
    assert np.array_equal(only(p_eq=0.0, p_reverb=0.0)(x, SR, np.random.default_rng(1)), x)
    assert ChannelAugment.from_config(None) is None and ChannelAugment.from_config({}) is None


def test_lowpass_removes_the_band_above_the_cutoff():
    x = noise()
    y = only(p_lowpass=1.0, lowpass_hz=[3000, 3000])(x, SR, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert band_energy(y, 4000, 8000) < 1e-4 * band_energy(x, 4000, 8000)
    assert band_energy(y, 200, 2500) == pytest.approx(band_energy(x, 200, 2500), rel=0.1)


def test_reverb_leaves_a_decaying_tail_after_a_click():
    x = np.zeros(SR, np.float32)
    x[100] = 1.0
    y = only(p_reverb=1.0, rt60=[0.4, 0.4], drr_db=[0, 0])(x, SR, np.random.default_rng(0))
    assert y[100] == pytest.approx(1.0)  # direct path first
    early, late = np.abs(y[200:1800]).mean(), np.abs(y[4000:5600]).mean()
    assert early > 3 * late > 0  # 60 dB in 0.4 s: about 7.5x weaker amplitude 0.15 s later


def test_synthetic_rir_direct_to_reverberant_ratio():
    h = synthetic_rir(0.3, 6.0, SR, np.random.default_rng(0))
    assert h[0] == 1.0 and len(h) == int(0.3 * SR)
    assert 10 * np.log10(1.0 / np.sum(h[1:] ** 2)) == pytest.approx(6.0, abs=1e-6)


def test_peaking_filter_has_its_gain_at_its_frequency_only():
    b, a = peaking_biquad(1000.0, 6.0, 1.0, SR)
    w, h = signal.freqz(b, a, worN=[50.0, 1000.0, 7000.0], fs=SR)
    db = 20 * np.log10(np.abs(h))
    assert db[1] == pytest.approx(6.0, abs=0.01) and abs(db[0]) < 0.5 and abs(db[2]) < 0.5


def test_eq_changes_the_spectrum_and_noise_sets_the_snr():
    x = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    y = only(p_eq=1.0, eq_db=12.0)(x, SR, np.random.default_rng(3))
    assert not np.allclose(x, y) and np.all(np.isfinite(y))
    z = only(p_noise=1.0, snr_db=[10, 10])(x, SR, np.random.default_rng(3))
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((z - x).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)


def test_same_generator_same_channel_and_stages_draw_independently():
    x = noise()
    aug = only(p_reverb=0.5, p_eq=0.5, p_lowpass=0.5, p_noise=0.5)
    a = aug(x, SR, np.random.default_rng([7, 3]))
    assert np.array_equal(a, aug(x, SR, np.random.default_rng([7, 3])))
    outs = {aug(x, SR, np.random.default_rng(s)).tobytes() for s in range(8)}
    assert len(outs) > 4  # different items get different channels
    # switching a later stage on (noise 100 dB down) leaves the earlier stages' draws as they were
    a = only(p_reverb=1.0, p_eq=1.0, p_lowpass=1.0)
    b = only(p_reverb=1.0, p_eq=1.0, p_lowpass=1.0, p_noise=1.0, snr_db=[100, 100])
    for s in range(4):
        g1, g2 = np.random.default_rng(s), np.random.default_rng(s)
        ya, yb = a(x, SR, g1), b(x, SR, g2)
        assert np.abs(ya - yb).max() < 1e-3 * np.abs(ya).max()
        assert g1.random() == g2.random()  # both consumed the same number of draws


@pytest.mark.parametrize("cfg, match", [
    ({"p_reverb": 1.5}, "p_reverb"),
    ({"p_room": 0.5}, "unknown key"),
    ({"rt60": [0.5, 0.1]}, "rt60"),
    ({"lowpass_hz": 4000}, "lowpass_hz"),
    ({"eq_bands": 0}, "eq_bands"),
    ([0.5], "mapping"),
])
def test_bad_settings_are_refused(cfg, match):
    with pytest.raises(ValueError, match=match):
        ChannelAugment.from_config(cfg)


def test_dataset_augments_without_moving_the_crop(tmp_path):
    """Turning augmentation on keeps each item's file, offset and gain draw; the crop differs."""
    path = tmp_path / "a.wav"
    sf.write(path, noise(3 * SR, seed=2), SR)
    entries = [Entry(path=str(path))]
    plain = CropDataset(entries, CropConfig(SR, 6400, 320, loudness_db=None, seed=4))
    aug = ChannelAugment.from_config({"p_lowpass": 1.0, "lowpass_hz": [2000, 2000]})
    ds = CropDataset(entries, CropConfig(SR, 6400, 320, loudness_db=None, seed=4, augment=aug))
    for epoch in range(3):
        x, y = plain[(epoch, 0)][0].numpy(), ds[(epoch, 0)][0].numpy()
        assert np.array_equal(y, ds[(epoch, 0)][0].numpy())
        expected = signal.sosfilt(signal.butter(8, 2000, fs=SR, output="sos"), x.astype(np.float64))
        np.testing.assert_allclose(y, expected.astype(np.float32), atol=1e-6)
