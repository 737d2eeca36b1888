"""The loop's pieces on their own: the typed train section, the fp16 update path."""
from __future__ import annotations

import pytest
import torch

from hasrd.train import Loop, TrainConfig, TrainingError


@pytest.mark.parametrize("section, message", [
    ({"batch_sise": 4}, "train.batch_sise: unknown setting; did you mean train.batch_size?"),
    ({"bogus_key": 3}, "train.bogus_key: unknown setting"),
    ({"batch_size": 0}, "train.batch_size=0: must be >= 1"),
    ({"batch_size": -2}, "train.batch_size=-2: must be >= 1"),
    ({"batch_size": "abc"}, "train.batch_size='abc': expected an integer"),
    ({"segment_seconds": 0}, "train.segment_seconds=0.0: must be a finite number > 0"),
    ({"max_steps": -1}, "train.max_steps=-1: must be >= 0"),
    ({"lr": float("nan")}, "train.lr=nan: must be a finite number > 0"),
    ({"best_mode": "low"}, "train.best_mode must be min or max"),
    ({"patience": 3}, "train.patience counts validations"),
    ({"mixed_precision": "fp8"}, "train.mixed_precision=fp8: use no, bf16 or fp16"),
])
def test_a_bad_train_section_is_refused_naming_the_key(section, message):
    with pytest.raises(TrainingError) as exc:
        TrainConfig.from_dict(section)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_the_train_section_casts_yaml_values():
    t = TrainConfig.from_dict({"lr": "3e-4", "max_steps": 10.0, "mixed_precision": False, "betas": [0.5, 0.9]})
    assert t.lr == 3e-4 and t.max_steps == 10 and isinstance(t.max_steps, int) and t.mixed_precision == "no"
    assert "audio_every" not in t.as_dict()  # a dead key is gone, and refused like any unknown one
    with pytest.raises(TrainingError, match="unknown setting"):
        TrainConfig.from_dict({"audio_every": 5})


class _Fp16Accelerator:
    """The parts of an Accelerator that :meth:`Loop.update` uses, with a real CPU GradScaler (a
    CPU accelerator refuses fp16, so the scaler path is exercised through this stand-in)."""

    num_processes, sync_gradients, device = 1, True, torch.device("cpu")

    def __init__(self):
        self.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        self.printed = []

    def backward(self, loss):
        self.scaler.scale(loss).backward()

    def unscale_gradients(self, optimizer):
        self.scaler.unscale_(optimizer.optimizer)

    def print(self, *args):
        self.printed.append(" ".join(map(str, args)))


def test_a_non_finite_fp16_gradient_skips_the_step_and_the_next_one_runs(tmp_path):
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer

    Accelerator(cpu=True)  # the process-wide state AcceleratedOptimizer reads
    acc = _Fp16Accelerator()
    loop = Loop({"train": {"max_bad_steps": 3}}, tmp_path, acc)
    model = torch.nn.Linear(4, 1)
    opt = AcceleratedOptimizer(loop.optimizer(model.parameters()), device_placement=False, scaler=acc.scaler)
    x = torch.ones(2, 4)
    before = [p.detach().clone() for p in model.parameters()]
    nan_grad = (model(x) * 0).abs().sqrt().sum()  # finite (0), its gradient is not
    assert loop.update(nan_grad, model, opt, "gen") is None
    assert "non-finite gradient, step skipped (1 in a row)" in acc.printed[-1]
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert acc.scaler.get_scale() < 1024.0  # the scaler saw the overflow
    logs = loop.update(model(x).pow(2).sum(), model, opt, "gen")  # used to raise "unscale_() has already been called"
    assert logs is not None and torch.isfinite(logs["grad_norm/gen"])
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert loop.state.bad_steps_in_a_row == 0


def test_under_bf16_autocast_the_losses_see_float32_audio(corpus, tmp_path):
    """Accelerate's bf16 autocast leaves a dataclass output in bf16; the codec task casts the
    decoded audio back to float32 before its losses compare it with the input."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from hasrd.config import apply_overrides, load_config
    from tests.conftest import TINY_CONFIGS

    AcceleratorState._reset_state(True)
    try:
        cfg = apply_overrides(load_config(TINY_CONFIGS["hasrd"]), [f"data.train={corpus}", "teacher=null",
                                                                   "train.batch_size=2", "train.max_steps=1"])
        acc = Accelerator(cpu=True, mixed_precision="bf16")
        loop = Loop(cfg, tmp_path / "run", acc)
        loop.setup(resume=False)
        seen = []
        mel = loop.task.mel_loss.forward
        loop.task.mel_loss.forward = lambda y, x: seen.append(y.dtype) or mel(y, x)
        with acc.autocast():
            loop.task.step(next(iter(loop.loader)))
        assert seen == [torch.float32]
    finally:
        AcceleratorState._reset_state(True)


def test_every_loss_section_the_codec_task_reads_is_a_known_section():
    from hasrd.train.codec_task import SECTION_LOSSES
    from hasrd.train.config import SECTIONS

    assert {section for _, section in SECTION_LOSSES.values()} <= set(SECTIONS)
