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


def test_ss_keeps_both_utterances_whole(lm_corpus, tmp_path):
    """The mixture is as long as the longer voice; the shorter one is zero-padded, not cropped."""
    assert make_recipe(lm_corpus, tmp_path / "d", "--each", "--tasks", "ss") == 0
    rows = rows_of(tmp_path / "d")
    assert len(rows) == 9
    lengths = set()
    for r in rows:
        n1, n2 = (sf.info(lm_corpus.parent / r[k]).frames for k in ("source", "source2"))
        lengths.add((n1, n2))
        x, t1, t2 = (wav(tmp_path / "d", r[k]) for k in ("input", "target", "target2"))
        assert x.size == t1.size == t2.size == max(n1, n2)
        for t, n in ((t1, n1), (t2, n2)):  # each source whole: its span is its own length
            nz = np.flatnonzero(t)
            assert n - 20 <= nz[-1] - nz[0] + 1 <= n
        assert r["text"] and r["text2"] and "cropped" not in r and "cropped2" not in r
    assert any(n1 != n2 for n1, n2 in lengths)  # the case the test is about occurs


def test_a_cropped_utterance_loses_its_text(lm_corpus, tmp_path):
    """--max-seconds 0.72: sentence 0 (0.70 s) stays whole with its text, sentences 1 and 2 (0.75,
    0.80 s) are cropped and marked, without text; vc pairs of cropped utterances are skipped."""
    assert make_recipe(lm_corpus, tmp_path / "d", "--each", "--tasks", "se,ss,vc", "--max-seconds", "0.72") == 0
    rows = rows_of(tmp_path / "d")

    def cut(source):
        return source.endswith(("_1.wav", "_2.wav"))

    for r in rows:
        assert r.get("cropped", False) is cut(r["source"]) and ("text" in r) is not cut(r["source"]), r
        if r["task"] == "ss":
            assert r.get("cropped2", False) is cut(r["source2"]) and ("text2" in r) is not cut(r["source2"]), r
    se = [r for r in rows if r["task"] == "se"]
    assert len(se) == 9 and sum(cut(r["source"]) for r in se) == 6
    vc = [r for r in rows if r["task"] == "vc"]
    assert vc and not any(cut(r["source"]) or cut(r["target_source"]) for r in vc)


def test_vc_rows_have_a_second_clip_of_the_ref_voice(lm_data, lm_corpus, tmp_path):
    vc = [r for r in rows_of(lm_data) if r["task"] == "vc"]
    assert vc
    for r in vc:
        assert r["ref2"] and r["ref2_source"] not in (r["ref_source"], r["target_source"])
        assert r["ref2_source"].split("/")[-2] == r["ref_voice"] == r["target_voice"]
        assert wav(lm_data, r["ref2"]).size == sf.info(lm_corpus.parent / r["ref2_source"]).frames
    # unpaired (an evaluation set): another clip of the ref's voice, not the ref
    corpus = write_corpus(tmp_path / "c", parallel=False)
    assert make_recipe(corpus, tmp_path / "d", "--each", "--tasks", "vc", "--vc-unpaired") == 0
    rows = rows_of(tmp_path / "d")
    assert len(rows) == 9
    for r in rows:
        assert r["ref2_source"] != r["ref_source"] and r["ref2_source"].split("/")[-2] == r["ref_voice"] != r["voice"]
    # a voice with one clip only: no ref2
    one = write_corpus(tmp_path / "c1", voices={"anna": 110.0, "bert": 170.0}, sentences=["one"], parallel=False)
    assert make_recipe(one, tmp_path / "e", "--each", "--tasks", "vc", "--vc-unpaired") == 0
    assert all("ref2" not in r for r in rows_of(tmp_path / "e"))
