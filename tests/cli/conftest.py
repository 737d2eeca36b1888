"""CLI fixtures: a tiny saved model (built once per session), a second one, and small audio files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import ROOT, tiny_codec


def pytest_configure(config):
    config.addinivalue_line("markers", "multiprocess: starts several processes with accelerate launch (small; in the normal suite)")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The tiny HASRD codec saved with save_pretrained: what ``--model`` points at."""
    path = tmp_path_factory.mktemp("model")
    tiny_codec("hasrd").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory) -> Path:
    """Same architecture, other weights: a different fingerprint."""
    from hasrd.codecs import build_codec
    from tests.conftest import tiny_config

    torch.manual_seed(123)
    codec = build_codec(tiny_config("hasrd")["model"]).eval()
    path = tmp_path_factory.mktemp("other_model")
    codec.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def cli_codec(model_dir):
    """The codec as the CLI loads it from ``model_dir``."""
    from hasrd.codecs import load_codec

    return load_codec(str(model_dir)).eval()


def tone(seconds: float, sr: int, channels: int = 1, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A short voiced-ish signal ``[T, C]`` (what soundfile writes)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = x + 0.01 * rng.standard_normal(t.shape)
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A small tree: different rates, mono/stereo, wav/flac/ogg, silence, a non-audio file."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "spk1").mkdir()
    (root / "spk2" / "deep").mkdir(parents=True)
    sf.write(root / "a.wav", tone(0.5, 44100, channels=2), 44100)
    sf.write(root / "spk1" / "b.flac", tone(0.3, 22050, freq=330), 22050)
    sf.write(root / "spk1" / "c.ogg", tone(0.4, 16000, freq=180), 16000, format="OGG", subtype="VORBIS")
    sf.write(root / "spk2" / "deep" / "d.wav", tone(0.25, 8000, freq=250), 8000)
    sf.write(root / "spk2" / "silent.wav", np.zeros((3200, 1), np.float32), 16000)
    (root / "spk2" / "readme.txt").write_text("not audio, and not picked up from a folder\n")
    return root


@pytest.fixture(scope="session")
def bad_audio(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    files = {"empty": root / "empty.wav", "text": root / "text.wav", "nan": root / "nan.wav",
             "inf": root / "inf.wav", "zero": root / "zero.wav"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not audio\n")
    x = np.zeros((1600, 1), np.float32)
    x[10] = np.nan
    sf.write(files["nan"], x, 16000, subtype="FLOAT")
    x[10] = np.inf
    sf.write(files["inf"], x, 16000, subtype="FLOAT")
    sf.write(files["zero"], np.zeros((0, 1), np.float32), 16000)
    return files


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m hasrd ARGS`` as a real subprocess (finds this checkout even if not installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HASRD_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "hasrd", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
