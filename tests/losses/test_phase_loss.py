"""hasrd.losses.PhaseLoss: phase-only, wrap-blind, term choice, masked, finite gradients; wired in the trainer."""
import json

import numpy as np
import pytest
import torch
from scipy.signal import hilbert

from hasrd.losses import PhaseLoss
from tests.conftest import speechlike
from tests.losses.conftest import run_tiny


def _x(seconds=1.0, seed=0):
    return speechlike(seconds, seed=seed)  # [1, 1, T]


def test_zero_for_the_same_signal_and_blind_to_level():
    loss = PhaseLoss()
    x = _x()
    assert float(loss(x, x)) < 1e-5
    assert float(loss(3.0 * x, x)) < 1e-5  # magnitude plays no part


def test_a_constant_phase_turn_costs_only_the_phase_term():
    x = _x()
    turned = torch.from_numpy(np.imag(hilbert(x[0, 0].numpy())).astype(np.float32)).view(1, 1, -1)
    steps_only = PhaseLoss()  # default: group delay and instantaneous frequency
    assert float(steps_only(turned, x)) < 0.06
    assert float(steps_only(-x, x)) < 0.03
    absolute = PhaseLoss(terms=["phase"])
    assert abs(float(absolute(turned, x)) - 1.0) < 0.08  # 90 degrees: 1 - cos = 1
    assert abs(float(absolute(-x, x)) - 2.0) < 0.03  # 180 degrees: 1 - cos = 2
    every = PhaseLoss(terms=["phase", "group_delay", "inst_freq"])
    assert abs(float(every(-x, x)) - 2 / 3) < 0.02


def test_a_frequency_error_shows_in_the_instantaneous_frequency_term():
    sr = 16000
    t = torch.arange(sr) / sr
    target = (0.3 * torch.sin(2 * torch.pi * 200 * t)).view(1, 1, -1)
    detuned = (0.3 * torch.sin(2 * torch.pi * 230 * t)).view(1, 1, -1)  # same level, 30 Hz off
    terms = PhaseLoss(floor_db=20.0).per_term(detuned, target)
    assert float(terms["inst_freq"]) > 0.3
    assert float(PhaseLoss(floor_db=20.0, terms=["inst_freq"])(target, target)) < 1e-4


def test_a_different_signal_costs_more_than_a_phase_turn():
    loss = PhaseLoss()
    x, y = _x(seed=0), _x(seed=1) * 0 + torch.randn(1, 1, 16000) * 0.05
    assert float(loss(y, x)) > 0.6


def test_quiet_target_bins_are_ignored():
    loss = PhaseLoss(floor_db=40.0)
    x = _x(2.0)
    target = x.clone()
    target[..., 16000:] = 1e-5 * torch.randn(1, 1, 16000)  # second half near-silent (-80 dB)
    pred = target.clone()
    pred[..., 16000 + 2048:] = 0.2 * torch.randn(1, 1, 16000 - 2048)  # noise only where the target is silent
    assert float(loss(pred, target)) < 0.02
    assert float(PhaseLoss(floor_db=200.0)(pred, target)) > 0.1  # with no floor, those bins count


def test_finite_gradients_even_for_a_silent_prediction():
    loss = PhaseLoss()
    pred = torch.zeros(2, 1, 8000, requires_grad=True)
    target = torch.cat([_x(0.5, seed=0), _x(0.5, seed=1)])
    loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all()


def test_bad_settings():
    with pytest.raises(ValueError):
        PhaseLoss(n_ffts=[])
    with pytest.raises(ValueError, match="phase_loss.terms"):
        PhaseLoss(terms=["pahse"])
    with pytest.raises(ValueError, match="phase_loss.terms"):
        PhaseLoss(terms=[])


def test_trainer_logs_and_trains_on_the_phase_term(corpus, tmp_path, capsys):
    assert run_tiny(tmp_path / "a", corpus) == 0
    assert run_tiny(tmp_path / "b", corpus, "loss_weights.phase=1.0", "phase_loss.n_ffts=[256]") == 0
    rows = lambda d: [json.loads(r) for r in open(d / "metrics.jsonl")]
    assert not any("loss/phase" in r for r in rows(tmp_path / "a"))  # off unless named
    b = [r for r in rows(tmp_path / "b") if "loss/phase" in r]
    assert b and all(0 < r["loss/phase"] <= 2 for r in b)
    first = lambda d: next(r["loss/total"] for r in rows(d) if "loss/total" in r)
    assert first(tmp_path / "b") > first(tmp_path / "a")  # the term is in the total
    capsys.readouterr()
    assert run_tiny(tmp_path / "c", corpus, "loss_weights.phase=1.0", "phase_loss.n_ffts=[]") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "phase_loss" in err[0], err
    assert not list((tmp_path / "c").glob("ckpt-*"))
