"""Evaluating the token LM's tasks (evaluate.py --lm): evaluation sets, scoring, refusals."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.lm.conftest import make_recipe, train_lm, write_corpus

NO_JUDGES = ["--asr", "none", "--speaker", "none", "--mos", "none", "--jobs", "1", "--no-progress"]


def rows_of(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory):
    """An evaluation set from a corpus where no two voices say the same sentence."""
    root = tmp_path_factory.mktemp("lm_eval")
    corpus = write_corpus(root / "corpus", parallel=False)
    assert make_recipe(corpus, root / "set", "--each", "--vc-unpaired", "--seed", "3") == 0
    return root / "set"


def test_each_makes_one_example_per_utterance_and_unpaired_vc_has_a_ref_but_no_target(eval_set):
    rows = rows_of(eval_set / "manifest.jsonl")
    by_task = {t: [r for r in rows if r["task"] == t] for t in ("se", "tse", "ss", "vc", "lass")}
    assert all(len(v) == 9 for v in by_task.values())  # 3 voices x 3 sentences, every one usable
    assert [r["source"] for r in by_task["se"]] == [r["source"] for r in by_task["vc"]]  # corpus order
    for r in by_task["vc"]:
        assert "target" not in r and r["ref"] and r["ref_voice"] != r["voice"]
    assert json.loads((eval_set / "recipe.json").read_text())["each"] is True


def test_without_vc_unpaired_a_corpus_without_parallel_sentences_gives_no_vc(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", parallel=False)
    assert make_recipe(corpus, tmp_path / "set", "--each", "--tasks", "se,vc") == 0
    assert {r["task"] for r in rows_of(tmp_path / "set" / "manifest.jsonl")} == {"se"}


def test_pit_order_puts_swapped_outputs_back():
    from hasrd.eval.tasks import pit_order

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(4000), rng.standard_normal(4000)
    noisy = [b + 0.1 * rng.standard_normal(4000), a + 0.1 * rng.standard_normal(4000)]
    assert pit_order([a, b], noisy)[0] is noisy[1]
    assert pit_order([a, b], noisy[::-1])[0] is noisy[1]


def test_every_task_is_scored_with_floor_and_ceiling_rows(lm_run, eval_set, tmp_path):
    from hasrd.eval.cli import main

    out = tmp_path / "out"
    assert main(["--lm", str(lm_run / "export"), "--lm-greedy", "--data", str(eval_set / "manifest.jsonl"),
                 "--baselines", "spectral-gating", "-o", str(out), *NO_JUDGES]) == 0
    rows = list(csv.DictReader(open(out / "task_rows.csv")))
    groups = {r["group"] for r in rows}
    assert {"se", "tse", "ss", "vc"} <= groups and groups & {"lass-speech", "lass-noise"}
    systems = {(r["group"], r["system"]) for r in rows}
    for g in groups:
        assert {(g, "input"), (g, "lm"), (g, "lm-greedy")} <= systems
        assert ((g, "target-tokens") in systems) == (g != "vc")  # unpaired vc rows have no target
    assert {s for g, s in systems if g != "se"} == {"input", "target-tokens", "lm", "lm-greedy"}
    assert ("se", "spectral-gating") in systems
    ss = [r for r in rows if r["group"] == "ss" and r["system"] == "lm"]
    assert len(ss) == 18 and {r["utt"][-3:] for r in ss} == {"_s1", "_s2"}  # one item per source
    vc = [r for r in rows if r["group"] == "vc"]
    assert vc and all(r.get("si_sdr", "") == "" and r.get("stoi", "") == "" for r in vc)
    scored = [r for r in rows if r["group"] == "se"]
    assert all(np.isfinite(float(r["si_sdr"])) and 0 <= float(r["stoi"]) <= 1 for r in scored)
    md = (out / "task_summary.md").read_text()
    for heading in ("## se", "## tse", "## ss", "## vc"):
        assert heading in md
    assert (out / "tasks.png").stat().st_size > 0 and json.loads((out / "tasks.json").read_text())["summary"]


def test_refusals_are_one_line_with_exit_2(lm_codec_dir, lm_data, lm_run, eval_set, tmp_path, capsys):
    from hasrd.eval.cli import main

    assert train_lm(tmp_path / "se", lm_codec_dir, lm_data, "lm.tasks=[se]", "train.max_steps=1") == 0
    capsys.readouterr()
    cases = [
        (["--lm", str(tmp_path / "se" / "export"), "--data", str(eval_set / "manifest.jsonl")], "not trained on"),
        (["--lm", str(lm_run / "export"), "--model", "default", "--data", str(eval_set / "manifest.jsonl")], "--model"),
        (["--lm", str(lm_run / "export"), "--data", str(tmp_path / "none.jsonl")], "no such task manifest"),
        (["--lm", str(tmp_path / "nowhere"), "--data", str(eval_set / "manifest.jsonl")], "--lm"),
    ]
    for argv, words in cases:
        assert main([*argv, "-o", str(tmp_path / "o"), *NO_JUDGES]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "o").exists()
