"""Shared by the loss tests that train: a 4-utterance corpus and a 2-step run of the tiny config."""
import pytest
import soundfile as sf

from hasrd.train import main as train_main
from tests.conftest import TINY_CONFIGS, speechlike


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        sf.write(d / f"utt{i}.wav", speechlike(1.0, seed=i)[0, 0].numpy(), 16000)
    return d


def run_tiny(out, corpus, *extra):
    """Two logged steps of the tiny HASRD config on ``corpus``; returns train.py's exit code."""
    return train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(out), "--no-tensorboard",
                       f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200",
                       "train.max_steps=2", "train.log_every=1", *extra])
