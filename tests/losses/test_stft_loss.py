"""hasrd.losses.StftLoss (auraloss's multi-resolution STFT loss on linear frequency): zero for the
same signal, ordered by how far the harmonics are off, finite gradients, one-line errors; wired
in the trainer only when named."""
import json
import sys

import numpy as np
import pytest
import torch

from hasrd.losses import StftLoss
from tests.losses.conftest import run_tiny

SR = 16000


def _envelope(f):
    return np.exp(-((f - 500) / 300) ** 2) + 0.5 * np.exp(-((f - 1500) / 400) ** 2) + 0.2 * np.exp(-((f - 2600) / 500) ** 2) + 0.02


def _voice(f0: float) -> np.ndarray:
    """One second of a steady vowel-like sound: harmonics of ``f0`` under a three-formant envelope."""
    t = np.arange(SR) / SR
    return sum(_envelope(k * f0) * np.sin(2 * np.pi * k * f0 * t + k) for k in range(1, int(7800 / f0)))


def _blurred() -> np.ndarray:
    """The same envelope without harmonics: white noise shaped by it."""
    spec = np.fft.rfft(np.random.default_rng(0).standard_normal(SR))
    return np.fft.irfft(spec * _envelope(np.fft.rfftfreq(SR, 1 / SR)), SR)


def _t(x: np.ndarray, like: np.ndarray) -> torch.Tensor:
    x = x * np.sqrt((like**2).mean() / (x**2).mean())  # equal power: only the spectral shape differs
    return 0.1 * torch.tensor(x, dtype=torch.float32)[None, None]


def test_zero_for_the_same_signal_and_ordered_by_how_far_the_harmonics_are_off():
    target = _voice(100.0)
    loss = StftLoss()
    same = float(loss(_t(target, target), _t(target, target)))
    off2, off5 = (float(loss(_t(_voice(f0), target), _t(target, target))) for f0 in (102.0, 105.0))
    blur = float(loss(_t(_blurred(), target), _t(target, target)))
    assert same == pytest.approx(0.0, abs=1e-6)
    assert 0 < off2 < off5 < blur  # harmonics a little off cost less than no harmonics at all


def test_gradients_reach_the_prediction_and_stay_finite_for_silence():
    target = _t(_voice(120.0), _voice(120.0))
    pred = (0.5 * target).clone().requires_grad_()
    StftLoss(n_ffts=[512, 2048])(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # a silent prediction sits on the power floor (auraloss clamps it): finite loss, zero gradient
    silent = torch.zeros_like(target).requires_grad_()
    value = StftLoss(n_ffts=[512, 2048])(silent, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(silent.grad).all()


def test_bad_settings_and_short_signals():
    for kwargs in ({"n_ffts": []}, {"n_ffts": 1024}, {"n_ffts": [8]}, {"w_sc": -1.0}, {"w_sc": 0, "w_log_mag": 0}):
        with pytest.raises(ValueError, match="stft_loss"):
            StftLoss(**kwargs)
    loss = StftLoss(n_ffts=[1024, 4096])
    assert loss.min_samples == 2049
    with pytest.raises(ValueError, match="2049 samples"):
        loss(torch.zeros(1, 1, 2048), torch.zeros(1, 1, 2048))


def test_trainer_logs_and_trains_on_the_term_only_when_named(corpus, tmp_path):
    assert run_tiny(tmp_path / "a", corpus) == 0
    assert run_tiny(tmp_path / "b", corpus, "loss_weights.stft=2.0", "stft_loss.n_ffts=[256,1024]") == 0
    rows = lambda d: [json.loads(r) for r in open(d / "metrics.jsonl") if "loss/total" in r]
    assert not any("loss/stft" in r for r in rows(tmp_path / "a"))
    a0, b0 = rows(tmp_path / "a")[0], rows(tmp_path / "b")[0]
    assert b0["loss/stft"] > 0
    # the same first step otherwise, so the total differs by exactly the weighted term
    assert np.isclose(b0["loss/total"] - 2.0 * b0["loss/stft"], a0["loss/total"], rtol=1e-4, atol=1e-5)


def test_trainer_errors_in_one_line_and_writes_nothing(corpus, tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    # the tiny config's crops are 0.4 s (6400 samples); a 16384-point window needs 8193
    assert run_tiny(tmp_path / "long", corpus, "loss_weights.stft=1.0", "stft_loss.n_ffts=[16384]") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stft_loss" in err[0] and "8193" in err[0], err
    assert run_tiny(tmp_path / "typo", corpus, "loss_weights.stft=1.0", "stft_loss.nffts=[512]") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].count("stft_loss") >= 1 and "nffts" in err[0], err
    monkeypatch.setitem(sys.modules, "auraloss.freq", None)  # as if the package were not installed
    assert run_tiny(tmp_path / "missing", corpus, "loss_weights.stft=1.0") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "auraloss" in err[0], err
    for d in ("long", "typo", "missing"):
        assert not list((tmp_path / d).glob("ckpt-*"))
