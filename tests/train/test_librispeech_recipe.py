"""The LibriSpeech GPU recipe (codec_configs/hasrd_librispeech.yaml, docs/training.md) dry-run on a
tiny stand-in: random tiny WavLM encoder and HuBERT teacher saved to a temp folder, Lhotse
manifests of a few files, the teacher cache, a few bf16 steps, evaluation; and the two switches
the recipe turns on, ``train.mixed_precision`` and ``train.compile``."""
from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest

from hasrd.config import load_config
from tests.conftest import ROOT, TINY_CONFIGS

pytest.importorskip("lhotse")
RECIPE = ROOT / "codec_configs" / "hasrd_librispeech.yaml"


@pytest.fixture
def fresh_accelerate():
    """Accelerate keeps one process-wide state: a run with another mixed precision needs it reset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def _standin_module():
    spec = importlib.util.spec_from_file_location("librispeech_standin", ROOT / "scripts" / "librispeech_standin.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_recipe_config_is_the_gpu_setting():
    cfg = load_config(RECIPE)
    enc, teacher, t = cfg["model"]["encoder"], cfg["teacher"], cfg["train"]
    assert (enc["type"], enc["arch"], enc["pretrained"]) == ("ssl", "wavlm", "microsoft/wavlm-base-plus")
    assert (teacher["type"], teacher["pretrained"], teacher["n_units"]) == ("hubert", "facebook/hubert-base-ls960", 500)
    assert cfg["model"]["semantic_head"] == {"dim": 768, "n_units": 500}
    assert t["mixed_precision"] == "bf16" and t["compile"] is True
    assert cfg["data"]["train"].endswith("librispeech_cuts_train-960.jsonl.gz")


def test_dry_run_on_a_tiny_standin(tmp_path, fresh_accelerate, capsys):
    from accelerate.state import AcceleratorState
    from lhotse import CutSet, load_manifest

    from hasrd.codecs import load_codec
    from hasrd.eval import main as eval_main
    from hasrd.teachers.cache import main as cache_main
    from hasrd.train import main as train_main

    d = tmp_path / "ls"
    overrides = _standin_module().make_standin(d)
    assert (d / "overrides.txt").read_text().split() == overrides
    for part in ("train-clean-100", "train-clean-360", "dev-clean", "test-clean"):  # = lhotse cut simple -r ... -s ...
        cuts = CutSet.from_manifests(recordings=load_manifest(d / f"librispeech_recordings_{part}.jsonl.gz"),
                                     supervisions=load_manifest(d / f"librispeech_supervisions_{part}.jsonl.gz"))
        cuts.to_file(d / f"librispeech_cuts_{part}.jsonl.gz")
    train = CutSet.from_file(d / "librispeech_cuts_train-clean-100.jsonl.gz") + CutSet.from_file(
        d / "librispeech_cuts_train-clean-360.jsonl.gz")  # = lhotse combine
    train.to_file(d / "librispeech_cuts_train-960.jsonl.gz")

    assert cache_main(["--config", str(RECIPE), "--output", str(d / "cache"), *overrides]) == 0
    assert "cached 9 file(s)" in capsys.readouterr().out
    run = tmp_path / "run"
    assert train_main(["--config", str(RECIPE), "--output-dir", str(run), "--no-tensorboard", *overrides,
                       f"teacher.cache={d / 'cache'}"]) == 0
    assert AcceleratorState().mixed_precision == "bf16"  # the config's switch reached the Accelerator
    out = capsys.readouterr().out
    assert "mixed precision: bf16 autocast on cpu" in out
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    steps = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(np.isfinite(r[k]) for r in steps for k in ("loss/total", "loss/mel", "loss/sem_reg", "loss/sem_ce", "loss/disc"))
    assert any("val/mel" in r for r in rows)
    codec = load_codec(run / "export")
    enc = codec.config["encoder"]
    assert enc["type"] == "ssl" and not enc.get("pretrained") and enc["config"]["hidden_size"] == 32  # stands alone

    out = tmp_path / "eval"
    assert eval_main(["--model", str(run / "export"), "--data", str(d / "librispeech_cuts_test-clean.jsonl.gz"),
                      "--n-q", "1,8", "--asr", "none", "--speaker", "none", "--mos", "none", "--no-probes",
                      "--jobs", "1", "--no-progress", "--output", str(out)]) == 0
    with open(out / "per_file.csv") as fh:
        per_file = list(csv.DictReader(fh))
    assert {r["system"] for r in per_file} == {"reference", "hasrd:export@nq1", "hasrd:export@nq8"}
    assert len({r["utt"] for r in per_file}) == 13 and all(r["error"] == "" for r in per_file)


def test_mixed_precision_switch_is_checked(tmp_path, capsys, fresh_accelerate):
    from hasrd.train import main as train_main

    base = ["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(tmp_path / "run"), "--no-tensorboard",
            "data.train=unused"]
    assert train_main([*base, "train.mixed_precision=fp8"]) == 1  # a refused run, as every bad train.* value
    assert capsys.readouterr().err.strip() == "train.py: error: train.mixed_precision=fp8: use no, bf16 or fp16 (or null)"
    assert not (tmp_path / "run").exists()


def test_compile_switch_compiles_the_codec_forward(tmp_path, monkeypatch, fresh_accelerate, capsys):
    """``train.compile`` calls ``nn.Module.compile`` on the codec (in place, so checkpoints and the
    export keep their parameter names). The compile itself is stubbed: inductor on a CPU takes
    minutes, so the compiled run is not tested here."""
    import soundfile as sf
    import torch

    from hasrd.codecs import Codec, load_codec
    from hasrd.train import main as train_main
    from tests.conftest import speechlike

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self)))
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(2):
        sf.write(d / f"u{i}.wav", speechlike(0.6, seed=i)[0, 0].numpy(), 16000)
    args = ["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(tmp_path / "run"), "--no-tensorboard",
            f"data.train={d}", "teacher=null", "model.semantic_head={}", "train.max_steps=1"]
    assert train_main([*args, "train.compile=true"]) == 0
    assert len(compiled) == 1 and issubclass(compiled[0], Codec)
    assert "train.compile: the codec's forward runs through torch.compile" in capsys.readouterr().out
    assert load_codec(tmp_path / "run" / "export").num_codebooks == 4
    compiled.clear()
    assert train_main([*args, "--output-dir", str(tmp_path / "run2")]) == 0  # off by default
    assert compiled == []
