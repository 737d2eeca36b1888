"""The shipped default model: it loads, reproduces its golden output, and really codes speech."""
import numpy as np
import pytest
import torch

from hasrd.codecs import DEFAULT_MODEL_DIR, load_codec
from hasrd.eval.data import DEFAULT_EVAL_DIR
from hasrd.eval.metrics import align, stoi_scores
from hasrd.io.audio import load_audio
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "pretrained" / "golden_default.npz"


@pytest.fixture(scope="module")
def codec():
    assert (DEFAULT_MODEL_DIR / "model.safetensors").is_file(), "the built-in default model is not shipped"
    return load_codec("default")


def test_shipped_weights_reproduce_the_golden_output(codec):
    golden = np.load(GOLDEN)
    assert str(golden["fingerprint"]) == codec.fingerprint(), "weights changed: rerun scripts/make_golden.py"
    x = torch.from_numpy(golden["clip"]).view(1, 1, -1)
    with torch.inference_mode():
        codes = codec.encode(x)
        decoded = codec.decode(codes)[0, 0, : x.shape[-1]].numpy()
    # the codes are integers: any change is a real change; a code that flips between two equally
    # near entries through float rounding on another CPU would show as a handful of differences
    mismatch = (codes[0].numpy() != golden["codes"]).mean()
    assert mismatch < 0.01, f"{mismatch:.1%} of codes differ from the golden ones"
    if mismatch == 0:
        np.testing.assert_allclose(decoded, golden["decoded"], atol=1e-3)


def test_default_model_facts(codec):
    assert codec.sample_rate == 16000 and codec.frame_rate == 50
    assert codec.num_semantic_codebooks == 1 and codec.num_codebooks == 6
    assert [codec.bitrate(n) for n in (1, 2, 3, 6)] == [500.0, 1000.0, 1500.0, 3000.0]


@pytest.mark.parametrize("n_q", [3, 6])
def test_round_trip_of_unseen_real_speech_is_intelligible(codec, n_q):
    """STOI of a real utterance the model never heard, far above what noise or a broken model gets."""
    audio, _ = load_audio(DEFAULT_EVAL_DIR / "librivox_sns01_0870.wav", codec.sample_rate)
    ref = audio[0, : 6 * codec.sample_rate]
    with torch.inference_mode():
        y = codec.decode(codec.encode(torch.from_numpy(ref).view(1, 1, -1), n_q=n_q))[0, 0].numpy()
    aligned, _ = align(ref, y)
    score = stoi_scores(ref, aligned)["stoi"]
    rng = np.random.default_rng(0)
    noise_score = stoi_scores(ref, rng.standard_normal(ref.size).astype(np.float32) * ref.std())["stoi"]
    assert noise_score < 0.5  # what the floor must stay clear of (0.38 on this clip)
    assert score > 0.65, f"STOI {score:.3f} at n_q={n_q} (noise scores {noise_score:.3f})"
