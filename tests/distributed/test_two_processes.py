"""Training on 2 gloo processes: the lr schedule, stop signals, resumes across process counts,
DDP with parameters outside the loss, synchronised codebooks, refusals on every rank."""
from __future__ import annotations

import json
import signal
import time

import pytest

from hasrd.config import load_config
from hasrd.train import TrainConfig, lr_lambda
from tests.distributed.conftest import train_argv


def logged(out, key):
    return {r["step"]: r[key] for r in map(json.loads, open(out / "metrics.jsonl")) if key in r}


def schedule(out):
    t = TrainConfig.from_dict(load_config(out / "config.yaml")["train"])
    return lambda step: t.lr * lr_lambda(t)(step - 1)  # the lr of the update that made ``step``


DRIVER = """
import hashlib, json, sys
import torch
from accelerate import Accelerator
from hasrd.config import load_config, apply_overrides
from hasrd.train import Loop
cfg = apply_overrides(load_config(sys.argv[1]), sys.argv[3:])
acc = Accelerator(cpu=True)
loop = Loop(cfg, sys.argv[2], acc)
loop.setup(resume=False)
loop.fit()
codec = acc.unwrap_model(loop.task.codec)
h = hashlib.sha256()
for name, buf in sorted(codec.named_buffers()):
    h.update(name.encode()); h.update(buf.detach().cpu().contiguous().numpy().tobytes())
open(f"{sys.argv[2]}/buffers{acc.process_index}.txt", "w").write(h.hexdigest())
"""


@pytest.fixture(scope="module")
def two_process_run(corpus, tmp_path_factory):
    """One 2-process run through the loop (a driver that also hashes each rank's codec buffers):
    6 steps, a 4-step warm-up, logged every step, ``teacher: null`` (the semantic head has no loss)."""
    from tests.distributed.conftest import Launch

    tmp = tmp_path_factory.mktemp("two")
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    out = tmp / "run"
    argv = train_argv(out, corpus, "teacher=null", "train.max_steps=6", "train.warmup_steps=4", "train.log_every=1",
                      "train.ckpt_every=6")
    run = Launch([str(driver), argv[2], str(out), *[a for a in argv[5:] if "=" in a]], 2, tmp)
    try:
        codes = run.wait()
        yield out, codes, run.output()
    finally:
        run.kill()


def check_schedule(out):
    lr, want = logged(out, "lr"), schedule(out)
    assert sorted(lr) == [1, 2, 3, 4, 5, 6]
    for step, value in lr.items():
        assert value == pytest.approx(want(step)), (step, value, want(step))
    assert lr[1] == pytest.approx(0.25 * lr[4])  # warm-up 1/4 .. 4/4, whatever the process count


def test_the_logged_lr_is_the_schedule_at_every_step_on_2_processes(two_process_run):
    out, codes, output = two_process_run
    assert codes == [0, 0], output
    assert "with 2 processes" in output
    check_schedule(out)


def test_the_logged_lr_is_the_schedule_at_every_step_on_1_process(corpus, tmp_path, launch):
    out = tmp_path / "run"
    run = launch(train_argv(out, corpus, "teacher=null", "train.max_steps=6", "train.warmup_steps=4",
                            "train.log_every=1"), 1)
    assert run.wait() == [0], run.output()
    check_schedule(out)


def test_a_trainable_head_outside_the_loss_trains(two_process_run):
    """teacher: null leaves the semantic head without a loss; DDP is told, and the run trains."""
    out, codes, output = two_process_run
    assert codes == [0, 0], output
    assert sorted(logged(out, "loss/total")) == [1, 2, 3, 4, 5, 6]


def test_codebook_buffers_agree_on_both_ranks(two_process_run):
    out, codes, output = two_process_run
    assert codes == [0, 0], output
    hashes = [(out / f"buffers{r}.txt").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]


def test_resuming_on_another_number_of_processes_warns(two_process_run, corpus, launch, tmp_path):
    import shutil

    run, codes, output = two_process_run
    assert codes == [0, 0], output
    out = tmp_path / "copy"
    shutil.copytree(run, out)  # the run stays as the other tests read it
    again = launch(train_argv(out, corpus, "teacher=null", "train.max_steps=7", "--resume"), 1)
    assert again.wait() == [0], again.output()
    assert "was saved by 2 processes and resumes on 1" in again.output()


def test_sigterm_to_one_rank_stops_both_with_a_checkpoint(corpus, tmp_path, launch):
    out = tmp_path / "run"
    run = launch(train_argv(out, corpus, "train.max_steps=100000", "train.log_every=1", "train.ckpt_every=100000"))
    deadline = time.time() + 180
    while not ((out / "metrics.jsonl").exists() and len(logged(out, "loss/total")) >= 2):
        assert time.time() < deadline and all(p.poll() is None for p in run.procs), run.output()
        time.sleep(0.5)
    run.procs[1].send_signal(signal.SIGTERM)  # the non-main rank: the main one must hear of it
    assert run.wait(120) == [0, 0], run.output()
    ckpts = sorted(out.glob("ckpt-*"))
    assert len(ckpts) == 1 and (ckpts[0] / "COMPLETE").exists(), run.output()
    done = json.loads((ckpts[0] / "COMPLETE").read_text())
    assert done["num_processes"] == 2 and done["step"] >= 2
    assert "a stop signal to another process: checkpoint saved" in run.output(0)


def test_an_unknown_best_metric_is_refused_on_every_rank_before_training(corpus, tmp_path, launch):
    out = tmp_path / "run"
    run = launch(train_argv(out, corpus, f"data.val={corpus}", "train.val_every=1", "train.best_metric=val/bogus",
                            "train.max_steps=3"))
    assert run.wait() == [1, 1], run.output()
    for rank in (0, 1):
        errors = [ln for ln in run.output(rank).splitlines() if "error" in ln]
        assert len(errors) == 1 and "train.best_metric 'val/bogus'" in errors[0], run.output(rank)
    assert not (out / "metrics.jsonl").exists()
