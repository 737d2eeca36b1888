import numpy as np
import pytest

from hasrd.eval import metrics as M


def test_identical_audio_is_perfect(speech):
    r = M.fidelity(speech, speech)
    assert r["pesq_wb"] == pytest.approx(4.64, abs=0.01)
    assert r["pesq_nb"] > 4.4
    assert r["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert r["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert r["si_sdr"] > 80
    assert r["mel_distance"] == pytest.approx(0.0, abs=1e-9)


def test_noise_lowers_every_score(speech):
    rng = np.random.default_rng(0)
    clean = M.fidelity(speech, speech)
    scores = []
    for level in (0.003, 0.03):
        noisy = speech + level * rng.standard_normal(speech.size).astype(np.float32)
        scores.append(M.fidelity(speech, noisy))
    for key in ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"):
        assert clean[key] > scores[0][key] > scores[1][key], key
    assert clean["mel_distance"] < scores[0]["mel_distance"] < scores[1]["mel_distance"]
    assert 5 < scores[1]["si_sdr"] < 20  # about 12 dB SNR on this clip


@pytest.mark.parametrize("delay", [0, 37, 480, -250, 1599])
def test_known_delay_is_found_and_removed(speech, delay):
    delayed = M.shift(speech, -delay, speech.size + max(delay, 0))  # later by `delay` samples
    assert M.estimate_delay(speech, delayed, max_lag=1600) == delay
    aligned, lag = M.align(speech, delayed, 16000, max_delay_ms=100)
    assert lag == delay and aligned.size == speech.size
    if delay >= 0:
        np.testing.assert_array_equal(aligned, speech)
    else:  # the leading samples were lost; the rest lines up
        np.testing.assert_array_equal(aligned[-delay:], speech[-delay:])
    assert M.si_sdr(speech, aligned) > 20


@pytest.mark.parametrize("delay", [0, 400, -240])
def test_delay_of_phase_regenerated_audio_is_found(speech, delay):
    """A decoder that keeps the spectrogram but not the phase (a vocoder, an iSTFT or GAN
    generator) has no usable waveform cross-correlation peak: on this clip a waveform-only search
    is off by more than 10 ms. The spectrogram search must land within 4 ms."""
    import librosa

    rng = np.random.default_rng(0)
    spec = librosa.stft(speech, n_fft=1024, hop_length=256)
    regen = librosa.istft(np.abs(spec) * np.exp(2j * np.pi * rng.random(spec.shape)), hop_length=256,
                          length=speech.size).astype(np.float32)
    delayed = M.shift(regen, -delay, speech.size + max(delay, 0))
    ref, deg = speech.astype(np.float64), delayed.astype(np.float64)
    nfft = 1 << (ref.size + deg.size).bit_length()
    corr = np.fft.irfft(np.fft.rfft(deg, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
    lags = np.arange(-1600, 1601)
    waveform_only = int(lags[np.argmax(corr[lags % nfft])])
    assert abs(waveform_only - delay) > 160  # what the search has to overcome
    assert abs(M.estimate_delay(speech, delayed, max_lag=1600) - delay) <= 64


def test_delay_search_is_bounded(speech):
    far = M.shift(speech, -3200, speech.size)  # 200 ms, outside +-100 ms
    assert abs(M.estimate_delay(speech, far, max_lag=1600)) <= 1600
    assert M.estimate_delay(speech, np.zeros_like(speech), 1600) == 0


def test_silent_degraded_gives_nan_pesq_not_a_crash(speech):
    r = M.pesq_scores(speech, np.zeros_like(speech))
    assert set(r) == {"pesq_wb", "pesq_nb"}


def _voice(f0: float, seconds: float = 1.2, sr: int = 16000, silence: float = 0.3) -> np.ndarray:
    """A harmonic 'vowel' (20 partials, falling amplitudes) at ``f0`` Hz between silences."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 21))
    pad = np.zeros(int(silence * sr))
    return (0.3 * np.concatenate([pad, x / np.abs(x).max(), pad])).astype(np.float32)


def test_pitch_scores_see_a_semitone_and_a_lost_voice():
    from hasrd.eval.metrics import pitch_scores, pitch_track

    ref = _voice(140.0)
    same = pitch_scores(ref, ref.copy())
    assert same["f0_cents"] < 5 and same["vuv_error"] < 3
    up = pitch_scores(ref, _voice(140.0 * 2 ** (1 / 12)))  # one semitone = 100 cents
    assert 85 < up["f0_cents"] < 115 and up["vuv_error"] < 10
    noise = np.random.default_rng(0).standard_normal(ref.size).astype(np.float32) * 0.05
    lost = pitch_scores(ref, noise)  # the voiced 1.2 s of 1.8 s are all unvoiced now
    assert lost["vuv_error"] > 50
    track = pitch_track(ref)
    assert pitch_scores(ref, _voice(140.0 * 2 ** (1 / 12)), reference_track=track) == up


def test_pitch_scores_without_common_voiced_frames_are_nan():
    from hasrd.eval.metrics import pitch_scores

    silence = np.zeros(16000, np.float32)
    out = pitch_scores(_voice(140.0, seconds=0.7), silence)
    assert np.isnan(out["f0_cents"]) and out["vuv_error"] > 30
