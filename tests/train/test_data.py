"""Training crops: speed perturbation (tempo, pitch and formants scaled together)."""
import numpy as np
import pytest
import soundfile as sf

from hasrd.io.manifest import Entry
from hasrd.train.data import CropConfig, CropDataset, change_speed

SR, HOP, SEG = 16000, 320, 6400


def tone(path, freq, seconds=3.0):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return Entry(path=str(path))


def peak_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * SR / len(x)


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_a_perturbed_crop_is_the_file_played_faster(tmp_path, factor):
    entries = [tone(tmp_path / "a.wav", 500.0)]
    ds = CropDataset(entries, CropConfig(SR, SEG, HOP, loudness_db=None, speed_factors=[factor]))
    crops = [ds[(0, 0)][0].numpy(), ds[(1, 0)][0].numpy()]
    for x in crops:
        assert x.shape == (SEG,) and np.abs(x[-50:]).max() > 0.2  # full length of signal, not padding
        assert peak_hz(x) == pytest.approx(500.0 * factor, abs=SR / SEG)
    plain = CropDataset(entries, CropConfig(SR, SEG, HOP, loudness_db=None))[(0, 0)][0].numpy()
    assert peak_hz(plain) == pytest.approx(500.0, abs=SR / SEG)


def test_crop_and_utterance_share_the_perturbed_timeline(tmp_path):
    """The crop is the slice [start, start + SEG) of the returned whole perturbed utterance, so
    teacher targets computed on the utterance line up with the crop."""
    rng = np.random.default_rng(0)
    path = tmp_path / "n.wav"
    sf.write(path, (0.1 * rng.standard_normal(SR * 4)).astype(np.float32), SR)
    cfg = CropConfig(SR, SEG, HOP, loudness_db=None, speed_factors=[0.9, 1.1], seed=1)
    ds = CropDataset([Entry(path=str(path))], cfg, utterance_rate=SR)
    seen = set()
    for epoch in range(8):
        item = ds[(epoch, 0)]
        whole = item["utterance"][0].numpy()
        speed = 4.0 / (len(whole) / SR)
        seen.add(round(speed, 2))
        start = int(item["start"])
        assert start % HOP == 0 and start + SEG <= len(whole)
        ref = whole[start:start + SEG]
        crop = item["audio"][0].numpy()
        inner = slice(64, SEG - 64)  # away from the resampler's edge effects of the cut crop
        err = np.sqrt(np.mean((crop[inner] - ref[inner]) ** 2)) / np.sqrt(np.mean(ref[inner] ** 2))
        assert err < 0.05, (epoch, speed, err)
    assert seen == {0.9, 1.1}


def test_same_key_same_crop_and_no_factors_keeps_the_old_crops(tmp_path):
    entries = [tone(tmp_path / "a.wav", 300.0), tone(tmp_path / "b.wav", 700.0, 2.0)]
    ds = CropDataset(entries, CropConfig(SR, SEG, HOP, speed_factors=[0.9, 1.0, 1.1], seed=5))
    assert np.array_equal(ds[(2, 1)].numpy(), ds[(2, 1)].numpy())
    a = CropDataset(entries, CropConfig(SR, SEG, HOP, seed=5))
    b = CropDataset(entries, CropConfig(SR, SEG, HOP, seed=5, speed_factors=[]))
    assert np.array_equal(a[(3, 0)].numpy(), b[(3, 0)].numpy())


def test_change_speed_length():
    x = np.zeros(16000, np.float32)
    assert change_speed(x, 1.0, SR) is x
    assert len(change_speed(x, 0.8, SR)) == pytest.approx(20000, abs=2)
    assert len(change_speed(x, 1.25, SR)) == pytest.approx(12800, abs=2)


@pytest.mark.parametrize("factors, match", [([0.3], r"\[0.5, 2\]"), (0.9, "must be a list")])
def test_bad_factors_are_refused(factors, match):
    with pytest.raises(ValueError, match=match):
        CropConfig(SR, SEG, HOP, speed_factors=factors)


def test_speed_perturbation_with_a_teacher_cache_is_refused(tmp_path):
    entries = [tone(tmp_path / "a.wav", 500.0)]
    with pytest.raises(ValueError, match="teacher cache"):
        CropDataset(entries, CropConfig(SR, SEG, HOP, speed_factors=[0.9, 1.1]), teacher_cache=object())
