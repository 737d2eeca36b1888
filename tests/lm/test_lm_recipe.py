"""The token-LM recipe: every task's fields and audio, reproducibility, skips and refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from hasrd.enhance.noise import active_rms
from hasrd.lm.recipe import QUERIES
from hasrd.lm.tasks import text_embedding
from tests.lm.conftest import make_recipe, write_corpus


def rows_of(d):
    return [json.loads(line) for line in open(d / "manifest.jsonl")]


def wav(d, rel):
    x, sr = sf.read(d / rel, dtype="float32")
    assert sr == 16000
    return x


def test_recipe_writes_each_tasks_fields(lm_data):
    rows = rows_of(lm_data)
    by_task = {t: [r for r in rows if r["task"] == t] for t in ("se", "tse", "ss", "vc", "lass")}
    assert {t: len(v) for t, v in by_task.items()} == dict.fromkeys(by_task, 2)
    for r in rows:
        x = wav(lm_data, r["input"])
        assert np.abs(x).max() <= 0.951 and r["text"] and r["voice"]
        has = {k for k in ("target2", "ref", "query") if k in r}
        assert has == {"ss": {"target2"}, "tse": {"ref"}, "vc": {"ref"}, "lass": {"query"}}.get(r["task"], set())
        if r["task"] != "vc":  # aligned: the target is a source of the input
            assert wav(lm_data, r["target"]).shape == x.shape
    for r in by_task["se"]:
        assert "snr" in r and r["noise"]
    for r in by_task["tse"]:  # enrollment: the target's voice, another sentence; the interferer another voice
        assert r["interferer"] != r["voice"] and r["ref_source"] != r["source"]
        assert r["ref_source"].split("/")[-2] == r["voice"]
    for r in by_task["ss"]:  # mixture = target + target2 (16-bit rounding aside), target the louder
        t1, t2 = wav(lm_data, r["target"]), wav(lm_data, r["target2"])
        assert np.abs(wav(lm_data, r["input"]) - t1 - t2).max() < 1e-3
        assert active_rms(t1, 16000) >= 0.999 * active_rms(t2, 16000) and r["voice2"] != r["voice"]
    for r in by_task["vc"]:  # same sentence, the ref's voice, a ref clip other than the target
        assert r["target_voice"] != r["voice"] and r["target_source"] != r["ref_source"]
        assert r["ref_source"].split("/")[-2] == r["target_voice"] == r["target_source"].split("/")[-2]
        assert r["target_source"].rsplit("_", 1)[-1] == r["source"].rsplit("_", 1)[-1]  # sentence index
    for r in by_task["lass"]:
        assert r["query"] == QUERIES[r["keep"]]


def test_recipe_is_reproducible_for_a_seed(lm_corpus, lm_data, tmp_path):
    assert make_recipe(lm_corpus, tmp_path / "again") == 0
    assert (tmp_path / "again" / "manifest.jsonl").read_text() == (lm_data / "manifest.jsonl").read_text()
    for r in rows_of(lm_data):
        for role in ("input", "target", "target2", "ref"):
            if role in r:
                assert (tmp_path / "again" / r[role]).read_bytes() == (lm_data / r[role]).read_bytes()
    assert make_recipe(lm_corpus, tmp_path / "other", "--seed", "1") == 0
    assert (tmp_path / "other" / "manifest.jsonl").read_text() != (lm_data / "manifest.jsonl").read_text()
    # one task's examples do not depend on which other tasks are built
    assert make_recipe(lm_corpus, tmp_path / "se_only", "--tasks", "se") == 0
    assert rows_of(tmp_path / "se_only") == [r for r in rows_of(lm_data) if r["task"] == "se"]


def test_vc_is_skipped_without_parallel_sentences_and_refusals_are_one_line(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c", voices={"anna": 110.0, "bert": 170.0}, sentences=["one", "two"], parallel=False)
    capsys.readouterr()
    assert make_recipe(corpus, tmp_path / "d", "--tasks", "se,vc") == 0
    assert {r["task"] for r in rows_of(tmp_path / "d")} == {"se"}
    assert "fewer than 2 for vc" in capsys.readouterr().err
    assert make_recipe(corpus, tmp_path / "d") == 1  # exists
    assert make_recipe(corpus, tmp_path / "e", "--tasks", "vc") == 1  # nothing at all to write
    assert make_recipe(tmp_path / "missing.jsonl", tmp_path / "f") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("recipe: error:") for line in err) and "exists" in err[0]
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists() and not list(tmp_path.glob(".*tmp*"))


def test_text_embedding_is_fixed_and_separates_the_queries():
    vecs = {q: text_embedding(q, 64) for q in QUERIES.values()}
    assert all(v.shape == (64,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in vecs.values())
    assert np.array_equal(text_embedding(" Keep  the SPEECH ", 64), vecs["keep the speech"])
    sims = np.array([[float(a @ b) for b in vecs.values()] for a in vecs.values()])
    assert (sims[~np.eye(len(vecs), dtype=bool)] < 0.99).all()
    assert not text_embedding("", 64).any()
    with pytest.raises(ValueError):
        text_embedding("x", 0)
