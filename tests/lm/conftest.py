"""Token-LM fixtures: a tiny corpus of numpy "voices", a tiny codec, a recipe and a short training run
(each built once per session)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import ROOT, tiny_codec

LM_TINY = ROOT / "codec_configs" / "lm" / "lm_tiny.yaml"
SR = 16000
VOICES = {"anna": 110.0, "bert": 170.0, "cleo": 240.0}  # f0 of each "voice"
SENTENCES = ["the cat sat", "a dog ran far", "we like tea"]


def voice(f0: float, sentence: int, seconds: float = 0.8, seed: int = 0) -> np.ndarray:
    """A harmonic "voice" at ``f0`` whose loudness pattern is the "sentence" (deterministic)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 2 * t))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + 1.5 * sentence) * t + sentence)
    x = 0.25 * x * env / np.abs(x).max() + 0.002 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def write_corpus(root: Path, voices=VOICES, sentences=SENTENCES, parallel: bool = True) -> Path:
    """Every voice says every sentence (``parallel``), or each voice its own sentences; returns the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for v, (name, f0) in enumerate(voices.items()):
        for s, text in enumerate(sentences):
            path = root / name / f"{name}_{s}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, voice(f0, s, 0.7 + 0.05 * s, seed=10 * v + s), SR)
            key = "speaker" if name == "cleo" else "voice"  # both spellings are read
            rows.append({"path": str(path.relative_to(root)), key: name, "text": text if parallel else f"{text} {name}"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def make_recipe(speech, out, *extra) -> int:
    from hasrd.lm.recipe import main

    return main(["--speech", str(speech), "--out", str(out), "--per-task", "2", "--min-seconds", "0.3",
                 "--no-progress", *extra])


def train_lm(out, codec_dir, data, *extra) -> int:
    from hasrd.train import main

    return main(["--config", str(LM_TINY), "--output-dir", str(out), "--no-tensorboard", f"lm.codec={codec_dir}",
                 f"data.train={data / 'manifest.jsonl'}", *extra])


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def lm_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("lm_corpus"))


@pytest.fixture(scope="session")
def lm_codec_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lm_codec")
    tiny_codec("hasrd").save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def lm_data(lm_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm_recipe") / "data"
    assert make_recipe(lm_corpus, out) == 0
    return out


@pytest.fixture(scope="session")
def lm_run(lm_codec_dir, lm_data, tmp_path_factory) -> Path:
    """A 4-step run on every task, validated at step 4, exported."""
    out = tmp_path_factory.mktemp("lm_run")
    torch.set_num_threads(1)
    assert train_lm(out, lm_codec_dir, lm_data, f"data.val={lm_data / 'manifest.jsonl'}", "train.val_every=4") == 0
    return out
