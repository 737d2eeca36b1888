"""Shared fixtures: tiny configs and models that build in well under a second."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIGS = {
    "hasrd": ROOT / "codec_configs" / "debug" / "hasrd_tiny.yaml",
    "hcodec": ROOT / "codec_configs" / "debug" / "hcodec_tiny.yaml",
}
TINY_HUBERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
)

warnings.filterwarnings("ignore", message=".*weight_norm.*")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (the model-training suites ask for it: tests/lm, tests/star)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(name: str) -> dict:
    from hasrd.config import load_config

    return load_config(TINY_CONFIGS[name])


def tiny_codec(name: str):
    from hasrd.codecs import build_codec

    torch.manual_seed(0)
    return build_codec(tiny_config(name)["model"]).eval()


def speechlike(seconds: float = 0.5, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    """A voiced, amplitude-modulated harmonic signal ``[1, 1, T]`` (deterministic)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.4 + 0.3 * np.sin(2 * np.pi * 4 * t))
    x = 0.2 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))
    return torch.from_numpy(x.astype(np.float32)).view(1, 1, -1)


def assert_learns(curve, factor: float = 0.6, window: int = 10) -> None:
    """Assert that a training-loss curve fell: the median of its last ``window`` steps is below
    ``factor`` times the median of its first ``window``.

    Medians, not means or single steps: one noisy step at either end (a spike of a batch-size-1
    run) must neither fail a run that learned nor pass one that did not.
    """
    curve = [float(v) for v in curve]
    assert len(curve) >= 2 * window, f"a curve of {len(curve)} steps is too short for two windows of {window}"
    assert all(np.isfinite(curve)), curve
    first, last = float(np.median(curve[:window])), float(np.median(curve[-window:]))
    assert last < factor * first, (f"median of the last {window} steps {last:.4g} is not below "
                                   f"{factor} x the first {window} ({first:.4g})", curve)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four 1 s speech-like wavs at 16 kHz in a folder (a training corpus for tiny runs); test
    folders that need another corpus define their own fixture of this name."""
    import soundfile as sf

    d = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        sf.write(d / f"utt{i}.wav", speechlike(1.0, seed=i)[0, 0].numpy(), 16000)
    return d


@pytest.fixture(params=["hasrd", "hcodec"])
def codec(request):
    return tiny_codec(request.param)
