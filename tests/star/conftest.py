"""STAR fixtures: a tiny token codec (the prompts' speech encoder), a tiny continuous codec (stage 2,
so the decoder exists), a tiny event set, a tiny prompt manifest of ``speechlike`` voices, and the
stage-1 and stage-2 runs (each built once per session)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import ROOT, speechlike, tiny_codec

STAR_TINY = ROOT / "codec_configs" / "star" / "star_tiny.yaml"
SR = 16000
#: two prompt "voices" told apart by pitch: class -> (rate the speechlike signal is made at, texts)
PROMPT_CLASSES = {"bell": (16000, ["a bell ringing", "church bell chimes"]),
                  "rain": (10000, ["rain falling", "heavy rain on a roof"])}


def prompt_wave(cls: str, seed: int) -> np.ndarray:
    # made at another rate and written at 16 kHz: the same contour at another pitch and length
    return speechlike(0.5 + 0.05 * seed, sr=PROMPT_CLASSES[cls][0], seed=seed)[0, 0].numpy()


def write_prompts(root: Path, per_class: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for cls, (_, texts) in PROMPT_CLASSES.items():
        for i in range(per_class):
            path = root / "wavs" / f"{cls}_{i}.wav"
            path.parent.mkdir(exist_ok=True)
            x = prompt_wave(cls, i)
            sf.write(path, x, SR)
            rows.append({"path": str(path.relative_to(root)), "text": texts[i % len(texts)], "class": cls,
                         "voice": "speechlike", "engine": "numpy", "split": "train", "seconds": len(x) / SR})
    manifest = root / "manifest_train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def train_star(out, *extra) -> int:
    from hasrd.train import main

    return main(["--config", str(STAR_TINY), "--output-dir", str(out), "--no-tensorboard", *extra])


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in open(Path(run) / "metrics.jsonl")]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def speech_codec_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("star_speech_codec")
    tiny_codec("hasrd").save_pretrained(d)
    return d


def continuous_codec(path: Path, seed: int = 0) -> Path:
    from hasrd.codecs import build_codec
    from hasrd.config import load_config

    torch.manual_seed(seed)
    cfg = load_config(ROOT / "codec_configs" / "debug" / "continuous_tiny.yaml")["model"]
    build_codec({**cfg, "stage": 2}).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def latent_codec_dir(tmp_path_factory) -> Path:
    return continuous_codec(tmp_path_factory.mktemp("star_latent_codec"))


@pytest.fixture(scope="session")
def events(tmp_path_factory) -> Path:
    from hasrd.events.recipe import main

    d = tmp_path_factory.mktemp("star_events") / "events"
    assert main(["--out", str(d), "--no-packages", "--per-class", "4", "--seconds", "0.5", "--no-progress"]) == 0
    return d


@pytest.fixture(scope="session")
def prompts(tmp_path_factory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("star_prompts"))


def stage1_args(speech_codec_dir, events, prompts) -> list[str]:
    return [f"star.speech_encoder.codec={speech_codec_dir}", f"data.events={events / 'manifest_train.jsonl'}",
            f"data.prompts={prompts}"]


def stage2_args(latent_codec_dir, events, prompts, stage1) -> list[str]:
    speech = json.loads((stage1 / "export" / "star.json").read_text())["speech_encoder"]["codec"]
    return ["star.stage=2", f"star.speech_encoder.codec={speech}", f"train.init_from={stage1 / 'export'}", f"star.codec={latent_codec_dir}",
            f"data.events={events / 'manifest_train.jsonl'}", f"data.prompts={prompts}"]


@pytest.fixture(scope="session")
def stage1(speech_codec_dir, events, prompts, tmp_path_factory) -> Path:
    """A 4-step bridge run, validated at step 4 on its own prompts, exported."""
    out = tmp_path_factory.mktemp("star_s1")
    torch.set_num_threads(1)
    assert train_star(out, *stage1_args(speech_codec_dir, events, prompts), f"data.val_prompts={prompts}",
                      "train.val_every=4") == 0
    return out


@pytest.fixture(scope="session")
def stage2(latent_codec_dir, events, prompts, stage1, tmp_path_factory) -> Path:
    """An 80-step generator run from the stage-1 export, validated at step 80 on the eval clips."""
    out = tmp_path_factory.mktemp("star_s2")
    torch.set_num_threads(1)
    assert train_star(out, *stage2_args(latent_codec_dir, events, prompts, stage1),
                      f"data.val_events={events / 'manifest_eval.jsonl'}", "train.val_every=80",
                      "train.max_steps=80", "train.ckpt_every=100", "train.batch_size=8") == 0
    return out
