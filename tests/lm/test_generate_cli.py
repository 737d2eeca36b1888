"""``hasrd generate``: audio for every task from a trained export, files and folders, and the refusals
(one stderr line, exit code != 0, nothing written)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from hasrd.cli import main
from tests.lm.conftest import voice


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen_in")
    sf.write(d / "mix.wav", voice(120.0, 0, 0.5) + voice(200.0, 1, 0.5), 16000)
    sf.write(d / "ref.wav", voice(200.0, 2, 0.6), 16000)
    (d / "set" / "sub").mkdir(parents=True)
    sf.write(d / "set" / "a.wav", voice(150.0, 1, 0.4), 22050)
    sf.write(d / "set" / "sub" / "b.flac", voice(180.0, 2, 0.3), 16000)
    return d


def gen(model, task, src, out, *extra):
    return main(["generate", "--task", task, str(src), "-o", str(out), "--model", str(model), *extra])


@pytest.mark.parametrize("task,extra", [("se", ()), ("tse", ("--ref", "REF")), ("vc", ("--ref", "REF")),
                                        ("lass", ("--query", "keep the speech")), ("ss", ())])
def test_every_task_writes_audio(task, extra, lm_run, clips, tmp_path):
    extra = [str(clips / "ref.wav") if a == "REF" else a for a in extra]
    assert gen(lm_run / "export", task, clips / "mix.wav", tmp_path / "out.wav", *extra) == 0
    names = ["out_s1.wav", "out_s2.wav"] if task == "ss" else ["out.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name in names:
        y, sr = sf.read(tmp_path / name)
        assert sr == 16000 and y.shape == (8000,) and np.isfinite(y).all()
    # the same seed gives the same audio; --greedy and --n-frames are taken
    assert gen(lm_run / "export", task, clips / "mix.wav", tmp_path / "again.wav", *extra) == 0
    first = tmp_path / ("again_s1.wav" if task == "ss" else "again.wav")
    assert first.read_bytes() == (tmp_path / names[0]).read_bytes()
    if task == "se":
        assert gen(lm_run / "export", task, clips / "mix.wav", tmp_path / "g.wav", "--greedy", "--n-frames", "7") == 0
        assert sf.read(tmp_path / "g.wav")[0].shape == (7 * 320,)


def test_folders_mirror_the_tree_and_keep_the_rate(lm_run, clips, tmp_path, capsys):
    assert gen(lm_run / "export", "ss", clips / "set", tmp_path / "o", "--top-k", "5", "--top-p", "0.9") == 0
    got = sorted(str(p.relative_to(tmp_path / "o")) for p in (tmp_path / "o").rglob("*.wav"))
    assert got == ["a_s1.wav", "a_s2.wav", "sub/b_s1.wav", "sub/b_s2.wav"]
    y, sr = sf.read(tmp_path / "o" / "a_s1.wav")
    assert sr == 22050 and y.shape == (6400,)  # the input's rate and length
    assert gen(lm_run / "export", "ss", clips / "set", tmp_path / "o") == 0  # done: skipped
    capsys.readouterr()
    assert gen(lm_run / "export", "se", clips / "mix.wav", tmp_path / "o" / "a_s1.wav") == 1  # exists
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]


@pytest.fixture(scope="module")
def se_only(lm_run, tmp_path_factory):
    """The export with its task list cut to se (the LM keeps its tokens, the CLI its refusals)."""
    d = tmp_path_factory.mktemp("se_only")
    meta = json.loads((lm_run / "export" / "lm.json").read_text())
    (d / "lm.json").write_text(json.dumps({**meta, "network": {**meta["network"], "tasks": ["se", "x1", "x2", "x3", "x4", "x5"]}}))
    (d / "model.safetensors").write_bytes((lm_run / "export" / "model.safetensors").read_bytes())
    return d


@pytest.fixture(scope="module")
def wrong_codec(lm_run, tmp_path_factory):
    """The export pointing at a codec of the same architecture with other weights."""
    import torch

    from hasrd.codecs import build_codec
    from tests.conftest import tiny_config

    d = tmp_path_factory.mktemp("wrong_codec")
    torch.manual_seed(7)
    build_codec(tiny_config("hasrd")["model"]).save_pretrained(d / "codec")
    meta = json.loads((lm_run / "export" / "lm.json").read_text())
    (d / "lm.json").write_text(json.dumps({**meta, "codec": str(d / "codec")}))
    (d / "model.safetensors").write_bytes((lm_run / "export" / "model.safetensors").read_bytes())
    return d


REFUSALS = [
    ("tse", (), "needs --ref"),
    ("vc", (), "needs --ref"),
    ("se", ("--query", "keep the speech"), "takes no --query"),
    ("vc", ("--ref", "REF", "--query", "keep it"), "takes no --query"),
    ("lass", (), "needs --query"),
    ("se", ("--ref", "REF"), "takes no --ref"),
    ("se", ("--temperature", "0"), "--temperature"),
    ("se", ("--model", "SE_ONLY"), None),  # allowed: the model knows se
    ("ss", ("--model", "SE_ONLY"), "not trained on --task ss"),
    ("se", ("--model", "WRONG"), "fingerprint"),
    ("se", ("--model", "NOWHERE"), "not a token-LM folder"),
]


@pytest.mark.parametrize("task,extra,words", REFUSALS)
def test_refusals_are_one_line_and_write_nothing(task, extra, words, lm_run, se_only, wrong_codec, clips, tmp_path, capsys):
    subs = {"REF": str(clips / "ref.wav"), "SE_ONLY": str(se_only), "WRONG": str(wrong_codec), "NOWHERE": str(tmp_path)}
    extra = [subs.get(a, a) for a in extra]
    model = lm_run / "export"
    if "--model" in extra:
        i = extra.index("--model")
        model, extra = extra[i + 1], extra[:i] + extra[i + 2:]
    out = tmp_path / "out" / "x.wav"
    capsys.readouterr()
    rc = gen(model, task, clips / "mix.wav", out, *extra)
    if words is None:
        assert rc == 0 and out.exists()
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("hasrd: error:") and words in err[0], err
    assert not (tmp_path / "out").exists()
