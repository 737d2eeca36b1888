"""Shared by the loss tests that train: a 4-utterance corpus and a 2-step run of the tiny config."""

from hasrd.train import main as train_main
from tests.conftest import TINY_CONFIGS


def run_tiny(out, corpus, *extra):
    """Two logged steps of the tiny HASRD config on ``corpus``; returns train.py's exit code."""
    return train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(out), "--no-tensorboard",
                       f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200",
                       "train.max_steps=2", "train.log_every=1", *extra])
