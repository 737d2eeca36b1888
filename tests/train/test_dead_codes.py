"""Dead-code counts: codes no item selected in the last ``dead_window`` training steps."""
import json

import pytest
import soundfile as sf
import torch

from hasrd.quantize.rvq import ResidualQuantizer
from hasrd.train import main as train_main
from tests.conftest import TINY_CONFIGS, speechlike


@pytest.mark.parametrize("threshold", [0.0, 2.0])
def test_dead_counts_follow_the_selected_codes(threshold):
    """Checked against the codes the quantizer returned, with and without the library's dead-code replacement."""
    torch.manual_seed(0)
    K, window = 32, 3
    q = ResidualQuantizer(8, 2, K, kmeans_init=False, threshold_ema_dead_code=threshold, decay=0.8).train()
    q.dead_window = window
    history = []
    for step in range(10):
        out = q(torch.randn(1, 8, 6) * (1 + step % 3))  # 6 vectors a step: most codes idle
        history.append([set(out.codes[0, i].tolist()) for i in range(2)])
        for i in range(2):
            recent = set().union(*(h[i] for h in history[-window:]))
            expected = K - len(recent) if len(history) >= window else 0
            assert out.metrics[f"rvq{i + 1}/dead"] == expected, (step, i)
    assert any(out.metrics[f"rvq{i + 1}/dead"] > 0 for i in range(2))
    # a metric only: not part of the weights, nothing counted in eval mode
    assert not any("steps_unused" in k for k in q.state_dict())
    assert not any(k.endswith("/dead") for k in q.eval()(torch.randn(1, 8, 6)).metrics)


def test_dead_counts_are_logged_per_codebook(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(3):
        sf.write(d / f"u{i}.wav", speechlike(0.8, seed=i)[0, 0].numpy(), 16000)
    assert train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(tmp_path / "run"), "--no-tensorboard",
                       f"data.train={d}", "teacher.n_units=16", "train.kmeans_frames=200", "train.max_steps=3",
                       "train.ckpt_every=100", "train.dead_code_window=2"]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    names = ["semantic1", "acoustic1", "acoustic2", "acoustic3"]
    for r in rows:
        for n in names:
            v = r[f"codebook/{n}/dead"]
            assert v == int(v) and 0 <= v <= 64
    assert all(r[f"codebook/{n}/dead"] == 0 for r in rows[:1] for n in names)  # one step: nothing can be dead yet
    # 2 crops x 20 frames a step rarely touch all 64 codes in 2 steps
    assert any(r[f"codebook/{n}/dead"] > 0 for r in rows[1:] for n in names)
