"""``evaluate.py --star``: every prompt generates one clip per system, the judge labels them, the
report holds accuracy, Fréchet distance and latency; bad inputs are one line and exit 2."""
from __future__ import annotations

import csv
import json

import pytest

from hasrd.eval.cli import main


@pytest.fixture(scope="module")
def judge_dir(events, tmp_path_factory):
    from hasrd.events.judge import main as judge_main

    out = tmp_path_factory.mktemp("star_judge") / "judge"
    assert judge_main(["--events", str(events), "--out", str(out), "--min-train", "2", "--no-progress"]) == 0
    return out


def _args(stage2, prompts, events, judge_dir, out, *extra):
    return ["--star", str(stage2 / "export"), "--data", str(prompts), "--judge", str(judge_dir),
            "--events-eval", str(events / "manifest_eval.jsonl"), "--star-steps", "2", "--star-seconds", "0.5",
            "--no-progress", "-o", str(out), *extra]


def test_star_evaluation_scores_every_system(stage2, prompts, events, judge_dir, tmp_path, capsys):
    # the fixture holds out one clip per class: pool train and eval clips as the "real" set so that a
    # class has several (a Fréchet distance needs two); no manifest_train.jsonl beside it: no real floor
    real = [json.loads(line) for name in ("manifest_train.jsonl", "manifest_eval.jsonl") for line in open(events / name)]
    for r in real:
        r["path"] = str(events / r["path"])
    pooled = tmp_path / "real" / "pooled.jsonl"
    pooled.parent.mkdir()
    pooled.write_text("".join(json.dumps(r) + "\n" for r in real))
    out = tmp_path / "eval"
    args = _args(stage2, prompts, events, judge_dir, out, "--asr", "pocketsphinx", "--limit", "4")
    args[args.index("--events-eval") + 1] = str(pooled)
    assert main(args) == 0
    assert "| system |" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "star_rows.csv")))
    judge_classes = json.loads((judge_dir / "judge.json").read_text())["classes"]
    by_system: dict[str, list[dict]] = {}
    for r in rows:
        by_system.setdefault(r["system"], []).append(r)
    # 4 of the 6 prompts (spread over both classes), one clip each per system; every held-out clip of a judged class
    assert {s: len(v) for s, v in by_system.items()} == {
        "real": sum(r["class"] in judge_classes for r in real), "codec": sum(r["class"] in judge_classes for r in real), "star": 4, "cascade": 4, "text": 4, "random-class": 4}
    assert {r["class"] for r in by_system["star"]} == {"bell", "rain"}
    for r in rows:
        assert r["judged"] in judge_classes and r["correct"] == str(float(r["judged"] == r["class"]))
    for r in by_system["random-class"]:  # conditioned on another class, scored against the asked one
        assert r["condition_class"] != r["class"]
    for r in by_system["text"]:
        assert r["condition_class"] == r["class"] and r["condition"]
    assert all(float(r["seconds"]) == 0.5 for s in ("star", "cascade", "text") for r in by_system[s])

    report = json.loads((out / "star.json").read_text())
    summary = {(s["export"], s["system"]): s for s in report["summary"]}
    name = stage2.name
    for system in ("star", "cascade", "text", "random-class"):
        s = summary[(name, system)]
        hits = [float(r["correct"]) for r in by_system[system]]
        assert s["n"] == 4 and s["accuracy"]["mean"] == pytest.approx(sum(hits) / 4)
    # latency: the spoken prompt's generation and the cascade (recogniser + generation) are both timed
    assert summary[(name, "star")]["latency_median"] > 0
    assert summary[(name, "cascade")]["latency_median"] > 0 and len(report["asr_seconds"]) == 4
    assert summary[(name, "text")]["latency_median"] is None
    # two prompts of a class give a Fréchet distance against that class's held-out clips
    assert set(report["fd"][f"{name}/star"]) == {"bell", "rain"} and "-/real" not in report["fd"]
    assert all(v >= 0 for v in report["fd"][f"{name}/star"].values())
    assert (out / "star_summary.md").read_text().startswith("# Speech-to-audio generation")
    assert (out / "star.png").stat().st_size > 0


def test_star_evaluation_refusals(stage1, stage2, prompts, events, judge_dir, tmp_path, capsys):
    cases = {
        "stage 1": (["--star", str(stage1 / "export")], "stage-1"),
        "no judge": (["--judge", str(tmp_path / "nojudge")], "judge"),
        "not prompts": (["--data", str(events / "manifest_eval.jsonl")], "text"),
        "steps": (["--star-steps", "0"], "--star-steps"),
    }
    for label, (override, words) in cases.items():
        args = _args(stage2, prompts, events, judge_dir, tmp_path / label.replace(" ", "_"), "--asr", "none")
        for i in range(0, len(override), 2):
            args[args.index(override[i]) + 1] = override[i + 1]
        capsys.readouterr()
        assert main(args) == 2, label
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and words in err[0], (label, err)
        assert not (tmp_path / label.replace(" ", "_")).exists(), label
