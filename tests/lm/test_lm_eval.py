"""Evaluating the token LM's tasks (evaluate.py --lm): evaluation sets, scoring, refusals."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.conftest import speechlike, tiny_codec
from tests.lm.conftest import make_recipe, train_lm, voice, write_corpus

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


def _scrambled(x, rng):
    """``x`` with its STFT magnitude and random phase (what a codec's output keeps of a source)."""
    from scipy.signal import istft, stft

    _, _, z = stft(x, 16000, nperseg=512)
    return istft(np.abs(z) * np.exp(2j * np.pi * rng.random(z.shape)), 16000, nperseg=512)[1][: x.size]


def test_pit_order_puts_swapped_outputs_back():
    """Two 1.5 s speech-like sources: swapped noisy copies are put back; so are swapped outputs that
    keep only the sources' magnitudes plus an in-phase leak of the other source, which SI-SDR
    pairs the wrong way and STOI the right one."""
    from hasrd.eval.metrics import si_sdr
    from hasrd.eval.tasks import pit_order

    rng = np.random.default_rng(0)
    a, b = speechlike(1.5).numpy().ravel().astype(np.float64), voice(240.0, 1, 1.5).astype(np.float64)
    a, b = a / a.std(), b / b.std()
    noisy = [b + 0.3 * rng.standard_normal(a.size), a + 0.3 * rng.standard_normal(a.size)]
    assert pit_order([a, b], noisy)[0] is noisy[1] and pit_order([a, b], noisy[::-1])[0] is noisy[1]
    coded = [_scrambled(b, rng) + 0.2 * a, _scrambled(a, rng) + 0.2 * b]
    assert si_sdr(a, coded[0]) + si_sdr(b, coded[1]) > si_sdr(a, coded[1]) + si_sdr(b, coded[0])  # SI-SDR: wrong
    assert pit_order([a, b], coded)[0] is coded[1] and pit_order([a, b], coded[::-1])[0] is coded[1]
    assert pit_order([a, b], coded, score=si_sdr)[0] is coded[0]  # another score may be given


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
    assert {s for g, s in systems if g not in ("se", "vc")} == {"input", "target-tokens", "lm", "lm-greedy"}
    assert {s for g, s in systems if g == "vc"} == {"input", "input-tokens", "ref-voice", "lm", "lm-greedy"}
    assert ("se", "spectral-gating") in systems
    ss = [r for r in rows if r["group"] == "ss" and r["system"] == "lm"]
    assert len(ss) == 18 and {r["utt"][-3:] for r in ss} == {"_s1", "_s2"}  # one item per source
    assert {r["seed"] for r in rows if r["system"] == "lm"} == {"0"}  # the default: seed 0
    vc = [r for r in rows if r["group"] == "vc"]
    assert vc and all(r.get("si_sdr", "") == "" and r.get("stoi", "") == "" for r in vc)
    assert len([r for r in vc if r["system"] == "ref-voice"]) == 9
    scored = [r for r in rows if r["group"] == "se"]
    assert all(np.isfinite(float(r["si_sdr"])) and 0 <= float(r["stoi"]) <= 1 for r in scored)
    md = (out / "task_summary.md").read_text()
    for heading in ("## se", "## tse", "## ss", "## vc"):
        assert heading in md
    assert (out / "tasks.png").stat().st_size > 0 and json.loads((out / "tasks.json").read_text())["summary"]
    summary = {(r["group"], r["system"]): r for r in csv.DictReader(open(out / "task_summary.csv"))}
    assert summary[("se", "input")]["si_sdr"] != "" and summary[("se", "spectral-gating")]["si_sdr"] != ""
    assert all(summary[("se", s)].get("si_sdr", "") == "" for s in ("target-tokens", "lm", "lm-greedy"))
    assert "codec does not keep phase" in md and "sampled, seed 0" in md


def test_lm_seeds_give_a_row_per_seed_and_their_spread(lm_run, eval_set, tmp_path, capsys):
    from hasrd.eval.cli import main

    out = tmp_path / "out"
    assert main(["--lm", str(lm_run / "export"), "--lm-greedy", "--lm-seeds", "0,1", "--limit", "3", "--data",
                 str(eval_set / "manifest.jsonl"), "-o", str(out), *NO_JUDGES]) == 0
    rows = list(csv.DictReader(open(out / "task_rows.csv")))
    lm = [r for r in rows if r["system"] == "lm"]
    assert len(lm) == 6 and sorted(r["utt"] for r in lm if r["seed"] == "0") == sorted(r["utt"] for r in lm if r["seed"] == "1")
    assert [r["seed"] for r in rows if r["system"] == "lm-greedy"] == [""] * 3  # greedy: one row per item
    assert not np.allclose(*(np.array([float(r["stoi"]) for r in lm if r["seed"] == k]) for k in "01"))
    summary = {r["system"]: r for r in csv.DictReader(open(out / "task_summary.csv"))}
    assert summary["lm"]["n"] == "6" and float(summary["lm"]["stoi_seed_sd"]) > 0
    assert summary["lm-greedy"].get("stoi_seed_sd", "") == "" and summary["input"].get("stoi_seed_sd", "") == ""
    assert "sampled, seeds 0, 1" in (out / "task_summary.md").read_text()
    from hasrd.eval.cli import build_parser

    assert build_parser().parse_args(["-o", "x"]).lm_seeds == [0]
    for bad in ("0,x", "-1", ""):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            build_parser().parse_args(["-o", "x", "--lm-seeds", bad])
        assert "--lm-seeds" in capsys.readouterr().err


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


def _row(group, system, utt, seed=None, **scores):
    return {"group": group, "task": group, "system": system, "utt": utt, "seed": seed, **scores}


def test_summary_pools_seeds_reports_their_spread_and_the_vc_speaker_gain():
    """Hand-made rows: items x seeds pooled, the std of the per-seed means, spk_gain paired per
    utterance (the LM's mean over seeds minus the input), no SI-SDR for codec-decoded systems."""
    from hasrd.eval.tasks import summarize_tasks, task_markdown

    rows = []
    for u, floor in (("a", 0.2), ("b", 0.4), ("c", 0.3)):
        rows.append(_row("vc", "input", u, spk_sim=floor, si_sdr=1.0, stoi=0.5))
        rows.append(_row("vc", "input-tokens", u, spk_sim=floor, si_sdr=-20.0, stoi=0.5))
        rows.append(_row("vc", "ref-voice", u, spk_sim=0.9))
        for seed, gain in ((0, 0.1), (1, 0.3)):
            rows.append(_row("vc", "lm", u, seed, spk_sim=floor + gain + (0.05 if u == "a" else 0.0), si_sdr=-30.0,
                             stoi=0.4 + 0.1 * seed, word_edits=seed + 1, ref_words=10))
    result = {"rows": rows, "systems": ["input", "input-tokens", "ref-voice", "lm"], "skipped": [],
              "codec_systems": ["target-tokens", "input-tokens", "ref-voice", "lm"],
              "lm": [{"name": "lm", "path": "x", "greedy": False, "seeds": [0, 1], "tasks": ["vc"], "codec": "c", "n_q": 3}]}
    summary = {e["system"]: e for e in summarize_tasks(result)}
    lm = summary["lm"]
    assert lm["n"] == 6 and lm["stoi"]["mean"] == pytest.approx(0.45)  # 3 items x 2 seeds
    assert lm["stoi_seed_sd"] == pytest.approx(np.std([0.4, 0.5], ddof=1))
    assert lm["wer_seed_sd"] == pytest.approx(np.std([0.1, 0.2], ddof=1)) and lm["wer"]["rate"] == pytest.approx(0.15)
    assert lm["spk_gain"]["n"] == 3 and lm["spk_gain"]["mean"] == pytest.approx(0.2 + 0.05 / 3)
    assert lm["si_sdr"] is None and summary["input-tokens"]["si_sdr"] is None
    assert summary["input"]["si_sdr"]["mean"] == pytest.approx(1.0) and "spk_gain" not in summary["input"]
    assert "stoi_seed_sd" not in summary["input"]
    md = task_markdown(result, list(summary.values()))
    assert "spk_gain" in md and "+0.217" in md and "spread over seeds" in md and "(`input-tokens`, `lm`)" in md


def test_target_tokens_are_coded_at_the_inputs_level():
    """As training coded its targets: decode(encode(x * g)) / g with g the input's level gain."""
    from types import SimpleNamespace

    import torch

    from hasrd.enhance.features import level_gain
    from hasrd.eval.tasks import _target_tokens

    codec = tiny_codec("hasrd")
    lm = SimpleNamespace(codec=codec, settings={"n_q": 3})
    x = speechlike(0.6)
    quiet, mixture = 0.02 * x, 0.02 * x + 0.01 * speechlike(0.6, seed=1)
    g = level_gain(mixture)
    with torch.inference_mode():
        want = (codec.decode(codec.encode(quiet * g, n_q=3)) / g).numpy().ravel()
        plain = codec.decode(codec.encode(quiet, n_q=3)).numpy().ravel()
    got = _target_tokens(lm, quiet.numpy().ravel(), mixture.numpy().ravel())
    assert got.shape == (quiet.numel(),) and np.allclose(got, want, atol=1e-6)
    assert not np.allclose(got, plain, atol=1e-3)
