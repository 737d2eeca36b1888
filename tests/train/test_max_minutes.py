"""train.max_minutes: a wall-clock limit that stops the loop like max_steps (checkpoint + export)."""
import json

import pytest

from hasrd.codecs import load_codec
from hasrd.train import TrainConfig, TrainingError, main as train_main
from tests.conftest import TINY_CONFIGS


def run(out, corpus, *extra):
    return train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(out), "--no-tensorboard",
                       f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200",
                       "train.log_every=100", "train.ckpt_every=100", *extra])


def steps(out):
    return [r["step"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss/total" in r]


def test_the_limit_stops_after_the_step_that_passes_it_with_a_checkpoint_and_an_export(corpus, tmp_path, capsys):
    # 6 ms: the first step already takes longer, so the run stops right after it
    assert run(tmp_path, corpus, "train.max_steps=50", "train.max_minutes=0.0001") == 0
    assert "max_minutes: 0.0001 min reached at step 1" in capsys.readouterr().out
    assert [p.name for p in tmp_path.glob("ckpt-*")] == ["ckpt-00000001"]
    assert (tmp_path / "ckpt-00000001" / "COMPLETE").exists()
    assert steps(tmp_path) == [1]  # the stopping step is logged even off log_every
    assert load_codec(tmp_path / "export").num_codebooks == 4
    # it continues from there; a limit that is not reached changes nothing
    assert run(tmp_path, corpus, "train.max_steps=3", "train.max_minutes=60", "--resume") == 0
    assert steps(tmp_path) == [1, 3]
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-00000001", "ckpt-00000003"]


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf"])
def test_a_bad_limit_is_one_clear_error_before_anything_runs(corpus, tmp_path, capsys, bad):
    assert run(tmp_path / "r", corpus, f"train.max_minutes={bad}") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.max_minutes" in err[0], err
    assert not list((tmp_path / "r").glob("ckpt-*"))


def test_no_limit_by_default():
    assert TrainConfig.from_dict({}).max_seconds is None
    assert TrainConfig.from_dict({"max_minutes": None}).max_seconds is None
    assert TrainConfig.from_dict({"max_minutes": 1.5}).max_seconds == 90.0
    with pytest.raises(TrainingError):
        TrainConfig.from_dict({"max_minutes": 0})
