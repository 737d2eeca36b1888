"""The shipped built-in models: each loads by name, reproduces its golden output, and really codes
speech it never heard; their token files are not interchangeable."""
import numpy as np
import pytest
import torch

from hasrd.codecs import BUILTIN_MODELS, PRETRAINED_DIR, builtin_model_of, load_codec
from hasrd.eval.data import DEFAULT_EVAL_DIR
from hasrd.eval.metrics import align, stoi_scores
from hasrd.io.audio import load_audio
from tests.conftest import ROOT

#: what each built-in model promises: rates, codebooks, bit rates at some n_q, the STOI floor
FACTS = {
    "default": {"codec": "hasrd", "frame_rate": 50, "n_semantic": 1, "n_q": 6,
                "bitrates": {1: 500.0, 2: 1000.0, 3: 1500.0, 6: 3000.0}, "stoi_n_q": (3, 6)},
    "hcodec-25hz": {"codec": "hcodec", "frame_rate": 25, "n_semantic": 2, "n_q": 8,
                    "bitrates": {1: 250.0, 2: 500.0, 6: 1500.0, 8: 2000.0}, "stoi_n_q": (6, 8)},
    # semantic, pitch, then acoustic codebooks of the spectral envelope (docs/pitch.md)
    "pitch": {"codec": "pitch", "frame_rate": 50, "n_semantic": 1, "n_q": 5,
              "bitrates": {1: 500.0, 2: 1000.0, 3: 1500.0, 5: 2500.0}, "stoi_n_q": (3, 5)},
}


def test_every_built_in_model_has_its_facts():
    assert set(FACTS) == set(BUILTIN_MODELS)


@pytest.fixture(scope="module", params=BUILTIN_MODELS)
def builtin(request):
    name = request.param
    assert (PRETRAINED_DIR / name / "model.safetensors").is_file(), f"the built-in {name} model is not shipped"
    return name, load_codec(name)


def test_shipped_weights_reproduce_the_golden_output(builtin):
    name, codec = builtin
    golden = np.load(ROOT / "tests" / "pretrained" / f"golden_{name}.npz")
    assert str(golden["fingerprint"]) == codec.fingerprint(), f"weights changed: rerun scripts/make_golden.py --model {name}"
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


def test_built_in_model_facts(builtin):
    name, codec = builtin
    facts = FACTS[name]
    assert codec.codec_name == facts["codec"]
    assert codec.sample_rate == 16000 and codec.frame_rate == facts["frame_rate"]
    assert codec.num_semantic_codebooks == facts["n_semantic"] and codec.num_codebooks == facts["n_q"]
    assert {n: codec.bitrate(n) for n in facts["bitrates"]} == facts["bitrates"]
    assert builtin_model_of(codec.codec_name, codec.fingerprint()) == name
    assert (PRETRAINED_DIR / name / "entropy.json").is_file(), "no entropy tables shipped"


def test_built_in_models_are_told_apart():
    assert builtin_model_of("hasrd", "0" * 16) is None
    assert len({load_codec(n).fingerprint() for n in BUILTIN_MODELS}) == len(BUILTIN_MODELS)


@pytest.mark.parametrize("which", [0, 1])
def test_round_trip_of_unseen_real_speech_is_intelligible(builtin, which):
    """STOI of a real utterance the model never heard, far above what noise or a broken model gets."""
    name, codec = builtin
    n_q = FACTS[name]["stoi_n_q"][which]
    audio, _ = load_audio(DEFAULT_EVAL_DIR / "librivox_sns01_0870.wav", codec.sample_rate)
    ref = audio[0, : 6 * codec.sample_rate]
    with torch.inference_mode():
        y = codec.decode(codec.encode(torch.from_numpy(ref).view(1, 1, -1), n_q=n_q))[0, 0].numpy()
    aligned, _ = align(ref, y)
    score = stoi_scores(ref, aligned)["stoi"]
    rng = np.random.default_rng(0)
    noise_score = stoi_scores(ref, rng.standard_normal(ref.size).astype(np.float32) * ref.std())["stoi"]
    assert noise_score < 0.5  # what the floor must stay clear of (0.38 on this clip)
    assert score > 0.65, f"{name}: STOI {score:.3f} at n_q={n_q} (noise scores {noise_score:.3f})"
