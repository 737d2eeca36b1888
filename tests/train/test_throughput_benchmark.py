"""benchmarks/train_throughput.py: the samples/s it derives from the trainer's cumulative log."""
import importlib.util
import json

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_measure_leaves_out_the_warm_up(bench, tmp_path):
    """Steps take 5 s (first), then 0.5 s each; the trainer logs cumulative samples/s since the loop began."""
    batch, durations = 4, [5.0] + [0.5] * 9
    lines, elapsed = [], 0.0
    for step, d in enumerate(durations, 1):
        elapsed += d
        lines.append(json.dumps({"step": step, "loss/total": 1.0, "samples_per_s": step * batch / elapsed}))
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n")
    r = bench.measure(path, batch, warmup=1, steps=9)
    assert r["samples_per_s"] == pytest.approx(batch / 0.5)
    assert r["first_steps_seconds"] == pytest.approx(5.0)
    assert bench.measure(path, batch, warmup=0, steps=10)["samples_per_s"] == pytest.approx(10 * batch / 9.5)
    with pytest.raises(RuntimeError):
        bench.measure(path, batch, warmup=3, steps=20)


def test_the_debug_config_gets_its_unit_count(bench, tmp_path):
    from hasrd.config import load_config

    cfg_path = ROOT / "codec_configs" / "debug" / "hasrd_tiny.yaml"
    args = bench.train_args(cfg_path, load_config(cfg_path), tmp_path / "o", tmp_path / "d", 2, 5, ["train.lr=1e-4"])
    assert "teacher.n_units=16" in args and "train.batch_size=2" in args and "train.max_steps=5" in args
    assert "train.log_every=1" in args and args[-1] == "train.lr=1e-4"
