"""Tests of scripts/make_real_corpus.py: the pause splitter, the held-out-speaker rule and
de-duplication on synthetic input, a tiny real build, and the one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_real_corpus.py"
SR = 16000

mrc = load_script("make_real_corpus")


def _tone(seconds: float, freq: float = 220.0, level: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _silence(seconds: float, sr: int = SR) -> np.ndarray:
    return np.zeros(int(round(seconds * sr)), dtype=np.float32)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Pause splitter
# ---------------------------------------------------------------------------------------------
def test_short_recording_is_one_part():
    x = np.concatenate([_tone(3), _silence(0.5), _tone(4)])
    assert mrc.split_at_pauses(x) == [(0, len(x))]


def test_split_only_at_pauses_and_parts_within_limits():
    # pauses of 0.5 s (at 6 s), 0.6 s (at 13.5 s) and a 0.1 s gap (too short to be a pause)
    pieces = [_tone(6), _silence(0.5), _tone(7, 330), _silence(0.6), _tone(5, 440), _silence(0.1), _tone(4)]
    x = np.concatenate(pieces)
    bounds = np.cumsum([0] + [len(p) for p in pieces])
    pauses = [(bounds[1], bounds[2]), (bounds[3], bounds[4])]  # the two real pauses, in samples
    parts = mrc.split_at_pauses(x)
    assert len(parts) >= 2
    assert parts[0][0] == 0 and parts[-1][1] == len(x)
    for (a, b), (c, _) in zip(parts, parts[1:]):
        assert b == c  # contiguous cover
        assert any(s <= b <= e for s, e in pauses), f"cut at {b / SR:.2f} s is not in a pause"
    for a, b in parts:
        assert 1.0 <= (b - a) / SR <= 15.0
    # the longest pause is the one chosen for a 22.2 s recording
    assert parts[0][1] == (bounds[3] + bounds[4]) // 2


def test_recursive_split_of_a_long_recording():
    pieces = []
    for i in range(6):  # 6 x (5 s speech + 0.4 s pause) = 32.4 s
        pieces += [_tone(5, 200 + 50 * i), _silence(0.4)]
    x = np.concatenate(pieces)
    parts = mrc.split_at_pauses(x)
    assert len(parts) >= 3
    assert all(1.0 <= (b - a) / SR <= 15.0 for a, b in parts)


def test_no_pause_is_cut_at_15_s():
    x = _tone(40)
    parts = mrc.split_at_pauses(x)
    assert [(b - a) / SR for a, b in parts] == [15.0, 15.0, 10.0]


def test_pause_that_leaves_a_short_side_is_not_used():
    # the only pause's middle is 0.8 s in: cut at 15 s instead
    x = np.concatenate([_tone(0.3), _silence(1.0), _tone(20)])
    parts = mrc.split_at_pauses(x)
    assert parts[0] == (0, 15 * SR)
    assert all((b - a) / SR <= 15.0 for a, b in parts)


def test_find_pauses_interior_only():
    active = np.array([0] * 30 + [1] * 10 + [0] * 30 + [1] * 10 + [0] * 10 + [1] * 5 + [0] * 40, dtype=bool)
    assert mrc.find_pauses(active, 25) == [(40, 70)]


# ---------------------------------------------------------------------------------------------
# Held-out speakers
# ---------------------------------------------------------------------------------------------
def test_val_holds_out_whole_speakers():
    rng = np.random.default_rng(0)
    seconds = {f"spk{i:02d}": float(rng.uniform(10, 200)) for i in range(40)}
    seconds["big"] = sum(seconds.values())  # half of all audio: never held out
    total = sum(seconds.values())
    for seed in (0, 1, 2):
        train, val = mrc.assign_splits(seconds, 0.08, seed)
        assert not (train & val) and train | val == set(seconds)
        assert "big" in train
        assert sum(seconds[s] for s in val) >= 0.08 * total
        # in sha1 order: every speaker before the last held-out one is held out or too big
        order = mrc.speaker_order(seconds, seed)
        last = max(order.index(s) for s in val)
        assert all(s in val or seconds[s] > 0.15 * total for s in order[:last])
    assert mrc.assign_splits(seconds, 0.08, 0) != mrc.assign_splits(seconds, 0.08, 1)
    train, val = mrc.assign_splits(seconds, 0.0, 0)
    assert val == set() and train == set(seconds)


def test_every_speaker_too_big_leaves_val_empty():
    train, val = mrc.assign_splits({"a": 10.0, "b": 10.0, "c": 10.0}, 0.08, 0)
    assert val == set() and train == {"a", "b", "c"}


# ---------------------------------------------------------------------------------------------
# De-duplication and the summary, on a synthetic Fish Fillets tree
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fake_fillets(tmp_path, monkeypatch):
    root = tmp_path / "fillets"
    lvl = root / "sound" / "lvl" / "cs"
    lvl.mkdir(parents=True)
    speech = np.concatenate([_silence(0.2, 22050), _tone(2.0, 300, sr=22050), _silence(0.2, 22050)])
    sf.write(lvl / "a-m-one.ogg", speech, 22050)
    (lvl / "b-m-two.ogg").write_bytes((lvl / "a-m-one.ogg").read_bytes())  # the same recording twice
    sf.write(lvl / "c-v-three.ogg", np.concatenate([_tone(1.5, 500, sr=44100), _silence(0.3, 44100)]), 44100)
    sf.write(lvl / "d-x-splash.ogg", _tone(2.0), SR)  # a sound effect: skipped
    sf.write(lvl / "e-m-hm.ogg", _tone(0.4), SR)  # too short
    (root / "sound" / "share").mkdir()
    sf.write(root / "sound" / "share" / "bubbles.ogg", _tone(2.0), SR)  # not in cs
    monkeypatch.setattr(mrc, "FILLETS_ROOT", root)
    monkeypatch.setattr(mrc, "USE_DPKG", False)
    return root


def test_duplicates_counted_once(fake_fillets, tmp_path):
    out = tmp_path / "out"
    assert mrc.main(["--out", str(out), "--sources", "fillets-ng-data-cs", "--jobs", "1", "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    src = s["sources"]["fillets-ng-data-cs"]
    assert src["duplicates"] == 1
    assert src["too_short"] == 1
    assert src["utterances"] == 2
    assert src["skipped"] == {"character code x (sound effect)": 1}
    recs = _read(out / "manifest.jsonl") + _read(out / "manifest_val.jsonl")
    assert sorted(r["speaker"] for r in recs) == ["fillets-cs/m", "fillets-cs/v"]
    assert {Path(r["orig"]).name for r in recs} == {"a-m-one.ogg", "c-v-three.ogg"}  # the first copy is kept
    assert len(list((out / "wavs").rglob("*.wav"))) == 2  # the duplicate's wav is not left behind
    for r in recs:
        assert 1.0 <= r["duration"] <= 15.0
        info = sf.info(str(out / r["path"]))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")


def test_speaker_labels():
    root = mrc.FILLETS_ROOT
    assert mrc.classify("fillets-ng-data-nl", root / "sound/airplane/nl/air-m-hello.ogg")["speaker"] == "fillets-nl/m"
    assert mrc.classify("fillets-ng-data-cs", root / "sound/gods/cs/bh-hs-x.ogg")["speaker"] == "fillets-cs/gods/hs"
    assert mrc.classify("fillets-ng-data-cs", root / "sound/gods/cs/help1.ogg")["speaker"] == "fillets-cs/gods/other"
    assert mrc.classify("fillets-ng-data-cs", root / "sound/gods/cs/bh-x-bang.ogg") == "character code x (sound effect)"
    assert isinstance(mrc.classify("fillets-ng-data", root / "music/a.ogg"), str)
    assert isinstance(mrc.classify("fillets-ng-data", root / "sound/share/a.ogg"), str)
    ast = mrc.ASTERISK_ROOT
    for voice, spk, lang in [("en_US_f_Allison", "asterisk/Allison", "en-US"),
                             ("es_MX_f_Allison", "asterisk/Allison", "es-MX"),
                             ("it_IT_m_Carlo", "asterisk/Carlo", "it-IT")]:
        c = mrc.classify("asterisk-core-sounds-en-g722", ast / voice / "digits" / "1.g722")
        assert (c["speaker"], c["language"]) == (spk, lang)
    assert isinstance(mrc.classify("asterisk-core-sounds-en-g722", ast / "en_US_f_Allison/silence/1.g722"), str)


# ---------------------------------------------------------------------------------------------
# A real build: 3 recordings of each of 2 packages
# ---------------------------------------------------------------------------------------------
REAL_PACKAGES = ("asterisk-core-sounds-en-g722", "fillets-ng-data-cs")


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    for pkg in REAL_PACKAGES:
        if not mrc.package_candidates(pkg):
            pytest.skip(f"{pkg} is not installed")
    pytest.importorskip("G722")
    out = tmp_path_factory.mktemp("real")
    res = _run("--out", out, "--sources", ",".join(REAL_PACKAGES), "--max-files", 3, "--jobs", 2, "--no-progress")
    assert res.returncode == 0, res.stderr
    return out, res


def test_real_build_outputs(real_corpus):
    from hasrd.io.manifest import read_manifest

    out, res = real_corpus
    assert "total" in res.stdout
    s = json.loads((out / "summary.json").read_text())
    assert set(s["sources"]) == set(REAL_PACKAGES)
    for pkg in REAL_PACKAGES:
        assert s["sources"][pkg]["files_read"] == 3
    train, val = _read(out / "manifest.jsonl"), _read(out / "manifest_val.jsonl")
    recs = train + val
    assert recs and len(recs) == s["total"]["utterances"]
    assert not ({r["speaker"] for r in train} & {r["speaker"] for r in val})
    entries = read_manifest(out / "manifest.jsonl") + read_manifest(out / "manifest_val.jsonl")
    assert len(entries) == len(recs)
    for e, r in zip(entries, recs):
        assert set(r) >= {"path", "speaker", "source", "language", "duration", "orig", "segment"}
        assert r["source"] in REAL_PACKAGES and Path(r["orig"]).is_file()
        assert e.path.is_file() and e.path == out / r["path"]
        assert r["path"].startswith(f"wavs/{r['source']}/")
        info = sf.info(str(e.path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (SR, 1, "PCM_16", "WAV")
        assert 1.0 <= info.frames / SR <= 15.0
        assert abs(info.frames / SR - r["duration"]) < 1e-3
    assert {r["speaker"] for r in recs if r["source"] == REAL_PACKAGES[0]} == {"asterisk/Allison"}
    assert not list(out.rglob("*.tmp"))


def test_real_build_resumes(real_corpus):
    out, _ = real_corpus
    before = {p: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")}
    res = _run("--out", out, "--sources", ",".join(REAL_PACKAGES), "--max-files", 3, "--jobs", 1, "--no-progress")
    assert res.returncode == 0, res.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["wavs_written"] == 0 and s["wavs_reused"] == s["total"]["utterances"]
    assert {p: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")} == before


# ---------------------------------------------------------------------------------------------
# One-line errors
# ---------------------------------------------------------------------------------------------
def test_unknown_package(tmp_path, capsys):
    out = tmp_path / "out"
    assert mrc.main(["--out", str(out), "--sources", "klettres-data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "klettres-data" in err[0] and "asterisk-core-sounds-en-g722" in err[0]
    assert not out.exists()


def test_missing_package(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(mrc, "ASTERISK_ROOT", empty)
    out = tmp_path / "out"
    assert mrc.main(["--out", str(out), "--sources", "asterisk-core-sounds-fr-g722"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install -y asterisk-core-sounds-fr-g722" in err[0]
    assert not out.exists()


def test_missing_g722(tmp_path, capsys, monkeypatch):
    if not mrc.package_candidates("asterisk-core-sounds-en-g722"):
        pytest.skip("asterisk-core-sounds-en-g722 is not installed")
    monkeypatch.setitem(sys.modules, "G722", None)  # makes "import G722" fail
    out = tmp_path / "out"
    assert mrc.main(["--out", str(out), "--sources", "asterisk-core-sounds-en-g722"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install g722" in err[0]
    assert not out.exists()
