"""Spoken prompts (hasrd.events.prompts): the texts, the held-out voices, the plan, the build with a
fake synthesiser, the refusals; one real synthesis run where espeak-ng or flite is installed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hasrd.events import prompts

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"path", "text", "class", "voice", "engine", "split", "seconds"}
mc = prompts.corpus_module()


def _events(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return folder


def _row(klass: str, descriptions: list[str], split: str = "train") -> dict:
    return {"path": f"clips/{klass}/x.wav", "class": klass, "descriptions": descriptions, "source": "synth",
            "licence": "MIT", "split": split, "seconds": 1.0}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def events(tmp_path):
    return _events(tmp_path / "events", [
        _row("bell", ["a bell ringing", "church bell  chimes"], "eval"),
        _row("bell", ["a bell ringing", " church bell chimes "]),
        _row("beep", ["a short beep"]),
        _row("alarm", ["a short beep", ""]),
        _row("rain", []),
    ])


# ---- texts -------------------------------------------------------------------------------------


def test_pairs_are_distinct_in_first_use_order(events):
    want = [("bell", "a bell ringing"), ("bell", "church bell chimes"), ("beep", "a short beep"),
            ("alarm", "a short beep")]
    assert prompts.collect_pairs(events) == want
    assert prompts.collect_pairs(events / "manifest.jsonl") == want  # the folder or the file


# ---- voices and the plan -----------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 20])
def test_held_out_voices_are_disjoint_and_seeded(k):
    voices = mc.all_voices(list(prompts.ENGINES))
    train, held = prompts.split_voices(voices, k, seed=3)
    assert len(held) == k and len(train) == len(voices) - k
    assert not {v.name for v in train} & {v.name for v in held}
    assert {v.name for v in train} | {v.name for v in held} == {v.name for v in voices}
    assert prompts.split_voices(list(reversed(voices)), k, seed=3) == (train, held)  # the seed alone decides
    assert any(prompts.split_voices(voices, k, seed=s)[1] != held for s in range(4, 8))


def test_each_text_gets_n_train_voices_and_one_held_out_voice(events):
    pairs = prompts.collect_pairs(events)
    voices = mc.all_voices(list(prompts.ENGINES))
    train, held = prompts.split_voices(voices, 3, seed=0)
    slots = prompts.plan(pairs, train, held, 4, seed=0)
    assert [(s.klass, s.text, s.split) for s in slots] == [(c, t, sp) for c, t in pairs for sp in ("train", "eval")]
    for s in slots:
        pool = train if s.split == "train" else held
        assert s.need == (4 if s.split == "train" else 1)
        assert len({v.name for v in s.candidates}) == len(s.candidates) == min(len(pool), s.need + prompts.MAX_RETRIES)
        assert all(v in pool for v in s.candidates)
    again = prompts.plan(list(reversed(pairs)), train, held, 4, seed=0)  # drawn per text
    assert sorted((s.klass, s.text, s.split, [v.name for v in s.candidates]) for s in again) == \
        sorted((s.klass, s.text, s.split, [v.name for v in s.candidates]) for s in slots)
    job = prompts.make_job(slots[0], slots[0].candidates[0], seed=0)
    same = prompts.make_job(slots[0], slots[0].candidates[0], seed=0)
    assert (job.rate, job.pitch, job.uid) == (same.rate, same.pitch, same.uid)  # prosody seeded per prompt
    assert mc.RATE_RANGE[0] <= job.rate <= mc.RATE_RANGE[1]
    with pytest.raises(ValueError, match="--voices-per-text"):
        prompts.plan(pairs, train[:2], held, 3, seed=0)


def test_every_held_out_voice_speaks_with_enough_texts():
    voices = mc.all_voices(list(prompts.ENGINES))
    train, held = prompts.split_voices(voices, 4, seed=0)
    pairs = [("c", f"text number {i}") for i in range(60)]
    used = {s.candidates[0].name for s in prompts.plan(pairs, train, held, 4, seed=0) if s.split == "eval"}
    assert used == {v.name for v in held}  # equal chances, whatever the voices' corpus weights


# ---- the build, with a fake synthesiser --------------------------------------------------------


def _fake_synth(reject_voice: str | None = None):
    def synth(spec, out_dir, work_dir):
        job = mc.Job(mc.Voice(**spec["voice"]), spec["text"], spec["source"], spec["sid"], spec["rate"], spec["pitch"])
        rel = f"wavs/{spec['dir']}/{job.uid}.wav"
        if spec["voice"]["name"] == reject_voice:
            return {"ok": False, "reason": "silent output", "path": rel, "voice": job.voice.name}
        dst = Path(out_dir) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(8000) / 16000
        sf.write(dst, 0.3 * np.sin(2 * np.pi * (200 + 10 * len(spec["text"])) * t), 16000, subtype="PCM_16")
        rec = mc.record(job, 0.5)["record"]
        rec["path"] = rel
        return {"ok": True, "skipped": False, "record": rec}
    return synth


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(mc, "check_tools", lambda *a, **k: None)
    monkeypatch.setattr(prompts, "_synth", _fake_synth())


def _main(*args) -> int:
    return prompts.main([*map(str, args), "--no-progress", "--jobs", "1"])


def test_build_writes_the_split_manifests_and_recipe(events, tmp_path, fake, capsys):
    out = tmp_path / "prompts"
    assert _main("--events", events, "--out", out, "--voices-per-text", 3, "--eval-voices", 2, "--seed", 5) == 0
    rows = _read(out / "manifest.jsonl")
    train, ev = _read(out / "manifest_train.jsonl"), _read(out / "manifest_eval.jsonl")
    assert len(rows) == 4 * (3 + 1) and {r["split"] for r in train} == {"train"} and {r["split"] for r in ev} == {"eval"}
    assert sorted(map(json.dumps, train + ev)) == sorted(map(json.dumps, rows))
    info = json.loads((out / "recipe.json").read_text())
    assert set(info["voices"]["eval"]) <= set(info["held_out_voices"]) and len(info["held_out_voices"]) == 2
    assert not set(info["voices"]["train"]) & set(info["held_out_voices"])
    assert info["counts"]["bell"] == {"texts": 2, "train": 6, "eval": 2} and info["rejected"] == []
    for r in rows:
        assert set(r) == FIELDS and r["path"].startswith(f"wavs/{r['class']}/") and (out / r["path"]).is_file()
    by_text = {}
    for r in rows:
        by_text.setdefault((r["class"], r["text"], r["split"]), []).append(r["voice"])
    assert all(len(set(v)) == len(v) == (3 if k[2] == "train" else 1) for k, v in by_text.items())
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary folder left
    assert "wrote 16 prompts of 4 texts (3 classes)" in capsys.readouterr().err
    # same arguments, same files; --force replaces
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert _main("--events", events, "--out", out, "--voices-per-text", 3, "--eval-voices", 2, "--seed", 5, "--force") == 0
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == first


def test_a_rejected_output_is_replaced_by_the_next_voice(events, tmp_path, monkeypatch, fake):
    out = tmp_path / "prompts"
    voices = mc.all_voices(list(prompts.ENGINES))
    train, held = prompts.split_voices(voices, 2, seed=0)
    first = prompts.plan(prompts.collect_pairs(events), train, held, 2, seed=0)[0].candidates[0].name
    monkeypatch.setattr(prompts, "_synth", _fake_synth(reject_voice=first))
    assert _main("--events", events, "--out", out, "--voices-per-text", 2, "--eval-voices", 2) == 0
    info = json.loads((out / "recipe.json").read_text())
    assert info["rejected"] and all(r["voice"] == first for r in info["rejected"])
    assert info["prompts"] == {"total": 12, "train": 8, "eval": 4} and info["short_texts"] == {"train": [], "eval": []}
    assert first not in {r["voice"] for r in _read(out / "manifest.jsonl")}


def test_an_interrupted_build_leaves_no_folder(events, tmp_path, monkeypatch, fake):
    calls = []

    def synth(spec, out_dir, work_dir):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return _fake_synth()(spec, out_dir, work_dir)

    monkeypatch.setattr(prompts, "_synth", synth)
    sox_opts = os.environ.get("SOX_OPTS")
    with pytest.raises(KeyboardInterrupt):
        _main("--events", events, "--out", tmp_path / "prompts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events"]
    assert os.environ.get("SOX_OPTS") == sox_opts  # restored


# ---- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case, extra, message", [
    ("no manifest", [], "no events manifest"),
    ("no descriptions", [], "has no descriptions"),
    ("not json", [], "line 1: not JSON"),
    ("ok", ["--voices-per-text", "0"], "--voices-per-text 0"),
    ("ok", ["--eval-voices", "0"], "--eval-voices 0"),
    ("ok", ["--engines", "flite", "--eval-voices", "5"], "--eval-voices 5: must be between 1 and 4"),
    ("ok", ["--engines", "flite", "--eval-voices", "2", "--voices-per-text", "4"], "--voices-per-text 4: must be between 1 and 3"),
    ("ok", ["--jobs", "0"], "--jobs 0"),
    ("ok", ["--engines", "sapi"], "--engines sapi"),
    ("exists", [], "exists (use --force"),
    ("tools", [], "install with: apt-get install -y"),
])
def test_refusals_are_one_line_and_leave_nothing(tmp_path, monkeypatch, capsys, case, extra, message):
    ev = tmp_path / "events"
    if case == "no descriptions":
        _events(ev, [_row("bell", []), _row("beep", [" "])])
    elif case == "not json":
        ev.mkdir()
        (ev / "manifest.jsonl").write_text("{nope\n")
    elif case != "no manifest":
        _events(ev, [_row("bell", ["a bell ringing"])])
    if case == "tools":
        monkeypatch.setattr(mc.shutil, "which", lambda name: None)
    else:
        monkeypatch.setattr(mc, "check_tools", lambda *a, **k: None)
    monkeypatch.setattr(prompts, "_synth", _fake_synth())
    out = tmp_path / "prompts"
    if case == "exists":
        out.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert prompts.main(["--events", str(ev), "--out", str(out), "--no-progress", *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prompts: error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "exists":
        assert not any(out.iterdir())


# ---- real synthesis ----------------------------------------------------------------------------

ENGINE = next((e for e in ("espeak-ng", "flite") if shutil.which(e)), None)


@pytest.mark.skipif(ENGINE is None, reason="neither espeak-ng nor flite is installed")
def test_real_synthesis(tmp_path):
    ev = _events(tmp_path / "events", [_row("bell", ["a bell ringing"]), _row("rain", ["rain falling on a roof"])])
    out = tmp_path / "prompts"
    cmd = [sys.executable, "-m", "hasrd.events.prompts", "--events", str(ev), "--out", str(out), "--voices-per-text", "1",
           "--eval-voices", "1", "--engines", ENGINE, "--jobs", "2", "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    rows = _read(out / "manifest.jsonl")
    train, ev_rows = _read(out / "manifest_train.jsonl"), _read(out / "manifest_eval.jsonl")
    assert len(train) == 2 and len(ev_rows) == 2
    assert sorted(map(json.dumps, train + ev_rows)) == sorted(map(json.dumps, rows))
    assert not {r["voice"] for r in train} & {r["voice"] for r in ev_rows}
    for r in rows:
        assert r["engine"] == ENGINE and set(r) == FIELDS
        info = sf.info(str(out / r["path"]))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        x, _ = sf.read(str(out / r["path"]), dtype="float32")
        assert abs(len(x) / 16000 - r["seconds"]) < 0.01 and 0.3 < r["seconds"] < 8
        assert np.sqrt(np.mean(x ** 2)) > 10 ** (-40 / 20)  # non-silent
    info = json.loads((out / "recipe.json").read_text())
    assert info["prompts"] == {"total": 4, "train": 2, "eval": 2} and len(info["held_out_voices"]) == 1
