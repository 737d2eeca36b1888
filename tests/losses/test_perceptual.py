"""hasrd.losses.perceptual: the STOI and PESQ stand-ins order degradations like the judges, pass
gradients, and are wired in the trainer only when named (clear one-line errors otherwise)."""
import json
import sys

import numpy as np
import pytest
import torch

from hasrd.codecs import load_codec
from hasrd.eval.metrics import pesq_scores, stoi_scores
from hasrd.losses.perceptual import PesqLoss, StoiLoss
from tests.conftest import speechlike
from tests.losses.conftest import run_tiny


def _pair(noise: float, seed: int = 0):
    x = speechlike(1.0, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    return x + noise * x.abs().max() * torch.randn(x.shape, generator=g), x


@pytest.mark.parametrize("cls", [StoiLoss, PesqLoss])
def test_best_for_the_same_signal_and_ordered_like_the_judge(cls):
    loss = cls(16000)
    values = [float(loss(*_pair(n))) for n in (0.0, 0.01, 0.05, 0.2)]
    assert values == sorted(values) and values[0] < values[1], values
    if cls is StoiLoss:
        assert values[0] == pytest.approx(-1.0, abs=1e-4)
    else:
        assert values[0] == pytest.approx(0.0, abs=1e-6)
    # the evaluator's judges (pystoi, ITU PESQ) order the same two degradations the same way
    judge = stoi_scores if cls is StoiLoss else pesq_scores
    key = "stoi" if cls is StoiLoss else "pesq_wb"
    mild, strong = (judge(x[0, 0].numpy(), y[0, 0].numpy())[key] for y, x in (_pair(0.01), _pair(0.2)))
    assert mild > strong


@pytest.mark.parametrize("cls", [StoiLoss, PesqLoss])
def test_gradients_reach_the_prediction(cls):
    y, x = _pair(0.05)
    y = y.clone().requires_grad_()
    cls(16000)(y, x).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_stoi_refuses_a_signal_shorter_than_its_segment():
    loss = StoiLoss(16000)
    x = speechlike(0.3)
    with pytest.raises(ValueError, match="STOI loss needs signals of 6553 samples"):
        loss(x, x)


def test_trainer_logs_the_terms_only_when_named(corpus, tmp_path):
    # crops of 0.5 s: STOI needs 6553 samples, the tiny config's 0.4 s crops are 6400
    assert run_tiny(tmp_path / "a", corpus, "train.segment_seconds=0.5") == 0
    assert run_tiny(tmp_path / "b", corpus, "train.segment_seconds=0.5", "loss_weights.stoi=1.0", "loss_weights.pesq=0.1") == 0
    rows = lambda d: [json.loads(r) for r in open(d / "metrics.jsonl")]
    assert not any("loss/stoi" in r or "loss/pesq" in r for r in rows(tmp_path / "a"))
    b = [r for r in rows(tmp_path / "b") if "loss/total" in r]
    assert b and all(-1 <= r["loss/stoi"] <= 0 and r["loss/pesq"] > 0 for r in b)
    # the STOI term (negative) is in the total: total = (a's terms) + stoi + 0.1 * pesq
    first = b[0]
    others = first["loss/total"] - first["loss/stoi"] - 0.1 * first["loss/pesq"]
    a0 = next(r for r in rows(tmp_path / "a") if "loss/total" in r)
    assert np.isclose(others, a0["loss/total"], rtol=1e-4, atol=1e-5)


def test_trainer_errors_in_one_line(corpus, tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    assert run_tiny(tmp_path / "short", corpus, "loss_weights.stoi=1.0", "train.segment_seconds=0.2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss_weights.stoi needs crops of 6553 samples" in err[0], err
    monkeypatch.setitem(sys.modules, "torch_pesq", None)  # as if the package were not installed
    assert run_tiny(tmp_path / "missing", corpus, "loss_weights.pesq=0.1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch-pesq" in err[0], err
    assert not list((tmp_path / "short").glob("ckpt-*")) and not list((tmp_path / "missing").glob("ckpt-*"))


@pytest.mark.parametrize("case", ["half silent", "silent prediction", "silent target"])
def test_pesq_gradients_stay_finite_on_silence(case):
    x = speechlike(0.64, seed=0)[..., :10240]
    zero = torch.zeros_like(x)
    half = torch.cat([x[..., :5120], zero[..., 5120:]], -1)
    pred, target = {"half silent": (half, half + 0.01 * torch.randn_like(x) * (half != 0)),
                    "silent prediction": (zero, x), "silent target": (0.01 * torch.randn_like(x), zero)}[case]
    pred = pred.clone().requires_grad_()
    loss = PesqLoss(16000)(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


class _NanGradient(torch.nn.Module):
    """A finite loss (0) whose gradient is NaN: d/dx sqrt(|0 * x|) = inf * 0."""

    def __init__(self, sample_rate):
        super().__init__()

    def forward(self, pred, target):
        return (pred * 0).abs().sqrt().sum()


def test_trainer_skips_a_step_whose_gradient_is_not_finite(corpus, tmp_path, capsys, monkeypatch):
    import hasrd.train.codec_task as codec_task

    monkeypatch.setitem(codec_task.RATE_LOSSES, "pesq", _NanGradient)
    capsys.readouterr()
    assert run_tiny(tmp_path / "a", corpus, "loss_weights.pesq=1.0") == 0
    out = capsys.readouterr()
    assert "step 0: non-finite gradient, step skipped (1 in a row)" in out.out + out.err
    codec = load_codec(tmp_path / "a" / "export")
    assert all(torch.isfinite(p).all() for p in codec.parameters())  # nothing was applied
    assert run_tiny(tmp_path / "b", corpus, "loss_weights.pesq=1.0", "train.max_bad_steps=2") == 1
    err = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error" in ln]
    assert len(err) == 1 and "2 non-finite steps in a row; stopping" in err[0], err
