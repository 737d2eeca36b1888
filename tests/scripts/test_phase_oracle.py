"""scripts/phase_oracle.py: the magnitude/phase swap and its command line."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from tests.conftest import speechlike, tiny_codec
from tests.scripts import load_script


def _speech(seconds=2.0, seed=0):
    return speechlike(seconds, seed=seed).numpy()[0, 0]


def test_identical_output_gives_the_reference_back_in_every_column():
    """The three swaps give the original back exactly; the Griffin-Lim column, which rebuilds
    the phase from the magnitudes alone, gives a signal that PESQ scores as near-transparent."""
    po = load_script("phase_oracle")
    x = _speech()
    out = po.oracle_signals(x, x.copy())
    assert list(out) == list(po.COLUMNS)
    for name, y in out.items():
        assert y.shape == x.shape, name
        if name != "output magnitude + Griffin-Lim phase":
            assert np.max(np.abs(y - x)) < 1e-4, name
    assert po.oracle_scores(x, x.copy(), 16000)["output magnitude + Griffin-Lim phase"] > 3.5


def test_a_phase_only_degradation_is_repaired_by_the_reference_phase():
    from scipy.signal import hilbert

    po = load_script("phase_oracle")
    x = _speech()
    # every component turned by 90 degrees (the Hilbert transform): same short-time magnitudes,
    # a phase-only degradation
    scrambled = np.imag(hilbert(x)).astype(np.float32)
    out = po.oracle_signals(x, scrambled)
    err = {k: float(np.sqrt(np.mean((y - x) ** 2))) for k, y in out.items()}
    # the reference phase repairs a phase-only degradation; the reference magnitude does not
    assert err["output magnitude + reference phase"] < 0.3 * err["output"]
    assert err["reference magnitude + output phase"] > 0.6 * err["output"]


def test_pesq_of_a_magnitude_only_degradation_is_repaired_by_the_reference_magnitude():
    import librosa

    po = load_script("phase_oracle")
    x = _speech()
    X = librosa.stft(x, n_fft=po.N_FFT, hop_length=po.HOP)
    rng = np.random.default_rng(2)
    # every STFT magnitude scaled by a random factor, the phase kept
    y = librosa.istft(X * np.exp(0.7 * rng.standard_normal(X.shape)), hop_length=po.HOP, length=x.size)
    pesq = po.oracle_scores(x, y, 16000)
    assert pesq["output"] < 2.0
    assert pesq["reference magnitude + output phase"] > pesq["output magnitude + reference phase"] + 1.5
    # Griffin-Lim knows only the output's magnitudes: it cannot repair them
    assert pesq["output magnitude + Griffin-Lim phase"] < pesq["reference magnitude + output phase"] - 1.5


def test_length_mismatch_is_refused():
    po = load_script("phase_oracle")
    x = _speech()
    try:
        po.oracle_signals(x, x[:-10])
    except ValueError as e:
        assert "lengths differ" in str(e)
    else:
        raise AssertionError("no error")


def test_training_losses_see_only_the_band_below_4_khz():
    po = load_script("phase_oracle")
    x = _speech()
    t = np.arange(x.size) / 16000
    same = po.training_losses(x, x.copy(), 16000)
    assert list(same) == list(po.LOSS_COLUMNS) and all(v < 1e-6 for v in same.values())
    loud = 0.5 * float(np.abs(x).max())
    above = po.training_losses(x, x + loud * np.sin(2 * np.pi * 6000 * t).astype(np.float32), 16000)
    below = po.training_losses(x, x + loud * np.sin(2 * np.pi * 1000 * t).astype(np.float32), 16000)
    for k in po.LOSS_COLUMNS:  # a tone at 6 kHz is cut away with Codec 2's missing band; at 1 kHz it counts
        assert above[k] < 0.05 * below[k], (k, above[k], below[k])


def _tiny_setup(tmp_path, seconds):
    """Two utterances in tmp_path/data and a tiny model in tmp_path/tinymodel; returns the data folder."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        sf.write(data / f"u{i}.wav", _speech(seconds, seed=i), 16000)
    tiny_codec("hasrd").save_pretrained(tmp_path / "tinymodel")
    return data


def test_command_line_on_a_tiny_model(tmp_path, capsys):
    po = load_script("phase_oracle")
    data = _tiny_setup(tmp_path, 1.5)
    rc = po.main(["--data", str(data), "--model", str(tmp_path / "tinymodel"), "--n-q", "1,99", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "mean of 2 utterances" in out
    rows = [line for line in out.split("Phase distance")[0].splitlines() if line.startswith("| hasrd:")]
    assert len(rows) == 1 and rows[0].startswith("| hasrd:tinymodel@nq1 |")
    assert len(rows[0].split("|")) == 2 + 1 + len(po.COLUMNS)
    assert "Phase distance" in out
    assert len(rows) == 1  # the first table's rows
    dist = [line for line in out.split("Phase distance")[1].splitlines() if line.startswith("| hasrd:")]
    values = [float(v) for v in dist[0].split("|")[2:-1]]
    assert len(values) == 3 and all(0 <= v <= 2 for v in values)
    assert "Training losses against the original" in out
    loss_rows = [line for line in out.split("Training losses")[1].splitlines() if line.startswith("| hasrd:")]
    assert len(loss_rows) == 1 and all(float(v) > 0 for v in loss_rows[0].split("|")[2:-1])
    assert "skip hasrd:tinymodel@nq99" in err


def test_figure_draws_the_original_and_each_output(tmp_path, capsys, monkeypatch):
    po = load_script("phase_oracle")
    data = _tiny_setup(tmp_path, 1.0)
    drawn = {}
    real = po.draw_spectrograms
    monkeypatch.setattr(po, "draw_spectrograms", lambda signals, *a, **k: (drawn.update(signals), real(signals, *a, **k)))
    png = tmp_path / "spec.png"
    rc = po.main(["--data", str(data), "--model", str(tmp_path / "tinymodel"), "--n-q", "1,2", "--no-progress",
                  "--figure", str(png), "--figure-utterance", "1"])
    assert rc == 0 and png.stat().st_size > 1000
    assert list(drawn) == ["original", "hasrd:tinymodel@nq1", "hasrd:tinymodel@nq2"]
    original = sf.read(data / "u1.wav", dtype="float32")[0]
    np.testing.assert_allclose(drawn["original"], original, atol=1e-4)  # utterance 1, not 0
    assert all(v.shape == original.shape for v in drawn.values())
    capsys.readouterr()
    bad = tmp_path / "never.png"
    rc = po.main(["--data", str(data), "--model", str(tmp_path / "tinymodel"), "--no-progress",
                  "--figure", str(bad), "--figure-utterance", "2"])
    _, err = capsys.readouterr()
    assert rc == 1 and err.startswith("phase_oracle.py: --figure-utterance 2 is not in 0..1") and err.count("\n") == 1
    assert not bad.exists()


def test_command_line_bad_data_is_one_line_error(tmp_path, capsys):
    po = load_script("phase_oracle")
    rc = po.main(["--data", str(tmp_path / "missing"), "--no-progress"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert err.startswith("phase_oracle.py: ") and err.count("\n") == 1


def _forced_pitch_system(f0: float):
    """A tiny hasrd system whose harmonic decoder ignores the codes: F0 ``f0``, fully voiced, the
    pulses at full share under a falling spectral tilt (as in tests/codecs/test_istft.py)."""
    import math

    import torch

    from hasrd.codecs import build_codec
    from hasrd.eval.systems import HasrdModel, HasrdSystem
    from hasrd.losses.pitch import FMAX, FMIN
    from tests.conftest import tiny_config

    cfg = tiny_config("hasrd")["model"]
    cfg["decoder"] = {"type": "istft", "dim": 32, "hidden": 64, "layers": 1, "source": "harmonic"}
    torch.manual_seed(0)
    codec = build_codec(cfg).eval()
    dec = next(m for m in codec.modules() if getattr(m, "renders_pitch", False) is True)
    with torch.no_grad():
        lin = dec.pitch_head[1]
        lin.weight.zero_()
        u = math.log(f0 / FMIN) / math.log(FMAX / FMIN)
        lin.bias.copy_(torch.tensor([math.log(u / (1 - u)), 8.0]))
        dec.head.weight.zero_()
        dec.head.bias.copy_(torch.cat([-6.0 * torch.arange(dec.n_bins) / dec.n_bins, torch.full((dec.n_bins,), 8.0)]))
    return HasrdSystem(HasrdModel(codec, "forced"), codec.num_codebooks)


def test_original_f0_replaces_the_decoders_own_and_is_undone_after():
    from hasrd.eval.metrics import pitch_track

    po = load_script("phase_oracle")
    system = _forced_pitch_system(300.0)
    x = _speech(2.0)  # F0 110 +- 30 Hz
    own, _ = system.process(x, 16000)
    given = po.decode_with_original_f0(system, x, 16000)
    mid = slice(3200, -3200)
    f_x, v_x = pitch_track(x[mid], 16000)
    f_own, _ = pitch_track(own[mid], 16000)
    f_given, v_given = pitch_track(given[mid], 16000)
    assert abs(np.nanmedian(f_own) - 300) < 15  # the decoder's own (forced) pitch
    both = v_x & v_given
    assert both.mean() > 0.5
    cents = np.abs(1200 * np.log2(f_given[both] / f_x[both]))
    assert np.median(cents) < 50  # the original's pitch, not the decoder's 300 Hz
    again, _ = system.process(x, 16000)
    np.testing.assert_allclose(again, own, atol=1e-6)  # the decoder's own pitch is back
    assert po.pitch_decoder(system) is not None
    assert po.pitch_decoder(load_script("phase_oracle")) is None  # anything without a codec


def test_oracle_f0_column_only_for_pitch_rendering_decoders(tmp_path, capsys):
    po = load_script("phase_oracle")
    data = _tiny_setup(tmp_path, 1.0)
    rc = po.main(["--data", str(data), "--model", str(tmp_path / "tinymodel"), "--n-q", "1", "--no-progress",
                  "--oracle-f0"])
    out, _ = capsys.readouterr()
    assert rc == 0 and po.ORACLE_F0_COLUMN in out.splitlines()[2]
    row = next(line for line in out.splitlines() if line.startswith("| hasrd:tinymodel@nq1 |"))
    assert row.rstrip(" |").endswith("-")  # the tiny model's decoder does not render pitch
