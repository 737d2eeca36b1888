"""Training with a precomputed teacher cache (teacher.cache) against the on-the-fly default."""
import json

import pytest
import soundfile as sf

from hasrd.teachers.cache import KMEANS_NAME, main as cache_main
from hasrd.train import main as train_main
from tests.conftest import TINY_CONFIGS, speechlike

COMMON = ["teacher.n_units=16", "train.kmeans_frames=200"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        sf.write(d / f"utt{i}.wav", speechlike(0.8 + 0.2 * i, seed=i)[0, 0].numpy(), 16000)
    return d


@pytest.fixture(scope="module")
def cache(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    assert cache_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output", str(out), f"data.train={corpus}", *COMMON]) == 0
    return out


def run(out, corpus, *extra):
    return train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(out), "--no-tensorboard",
                       f"data.train={corpus}", *COMMON, "train.max_steps=2", "train.ckpt_every=100", *extra])


def rows(out):
    return [json.loads(line) for line in open(out / "metrics.jsonl")]


def test_training_with_the_cache_matches_on_the_fly(corpus, cache, tmp_path):
    assert run(tmp_path / "fly", corpus) == 0
    assert run(tmp_path / "cached", corpus, f"teacher.cache={cache}") == 0
    # the run adopts the cache's units, which are the ones the on-the-fly run fitted itself
    km = (cache / KMEANS_NAME).read_bytes()
    assert (tmp_path / "cached" / "teacher_kmeans.safetensors").read_bytes() == km
    assert (tmp_path / "fly" / "teacher_kmeans.safetensors").read_bytes() == km
    fly, cached = rows(tmp_path / "fly")[0], rows(tmp_path / "cached")[0]
    assert fly["step"] == cached["step"] == 1
    # same data, same model: step 1 differs only by the float16 storage of the features
    assert cached["loss/sem_ce"] == pytest.approx(fly["loss/sem_ce"], rel=1e-5)
    assert cached["loss/sem_reg"] == pytest.approx(fly["loss/sem_reg"], rel=1e-3, abs=1e-4)
    assert cached["loss/mel"] == fly["loss/mel"]
    assert (tmp_path / "cached" / "export" / "model.safetensors").is_file()


def test_training_refuses_a_cache_of_another_teacher(corpus, cache, tmp_path, capsys):
    assert run(tmp_path / "a", corpus, f"teacher.cache={cache}", "teacher.n_mfcc=12",
               "model.semantic_head.dim=36") == 1
    err = capsys.readouterr().err
    assert "another teacher" in err and "n_mfcc" in err
    assert run(tmp_path / "b", corpus, f"teacher.cache={cache}", "teacher.context=crop") == 1
    assert "context" in capsys.readouterr().err
    # a run whose own units differ from the cache's (say, resumed with the cache added) is refused
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "teacher_kmeans.safetensors").write_bytes((cache / KMEANS_NAME).read_bytes())
    import torch

    from hasrd.teachers import KMeansUnits

    KMeansUnits(torch.randn(16, 39)).save(tmp_path / "c" / "teacher_kmeans.safetensors")
    assert run(tmp_path / "c", corpus, f"teacher.cache={cache}") == 1
    assert "differs from the units" in capsys.readouterr().err


def test_crop_context_keeps_the_previous_targets(corpus, tmp_path):
    """teacher.context=crop: targets computed on the crop itself (runs started before utterance targets)."""
    assert run(tmp_path / "crop", corpus, "teacher.context=crop") == 0
    assert run(tmp_path / "utt", corpus) == 0
    crop, utt = rows(tmp_path / "crop")[0], rows(tmp_path / "utt")[0]
    assert crop["loss/mel"] == utt["loss/mel"]  # same data and model
    assert crop["loss/sem_reg"] != utt["loss/sem_reg"]  # other targets
