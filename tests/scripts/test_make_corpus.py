"""End-to-end test of scripts/make_corpus.py on a tiny budget (a few seconds of synthesis)."""
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

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "make_corpus.py"
BINARIES = ("flite", "text2wave", "espeak-ng", "sox")
FIELDS = {"path": str, "text": str, "voice": str, "engine": str, "rate": (int, float),
          "pitch": (int, float), "duration": (int, float), "source": str}


mc = load_script("make_corpus")


def _run(*args, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture(scope="module")
def tools():
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"synthesiser binaries missing: {', '.join(missing)}")
    res = _run("--check")
    if res.returncode == mc.EXIT_MISSING:
        pytest.skip(res.stderr.strip())
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def corpus(tools, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    # a relative --out, as in the documented command
    res = _run("--out", out.name, "--max-utts", 6, "--seed", 7, "--jobs", 2, "--no-progress", cwd=out.parent)
    assert res.returncode == 0, res.stderr
    return out


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_manifest_lines_and_audio(corpus):
    train = _read(corpus / "manifest.jsonl")
    val = _read(corpus / "manifest_val.jsonl")
    assert len(train) == 6
    assert 1 <= len(val) <= 2
    for rec in train + val:
        for key, typ in FIELDS.items():
            assert isinstance(rec[key], typ), (key, rec)
        assert rec["engine"] in ("flite", "festival", "espeak-ng", "real")
        assert rec["path"] == f"wavs/{rec['voice']}/{rec['id']}.wav"
        assert rec["source"].startswith("hasrd-original/")
        assert mc.MIN_WORDS <= len(rec["text"].split()) <= mc.MAX_WORDS
        info = sf.info(str(corpus / rec["path"]))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        x, _ = sf.read(str(corpus / rec["path"]), dtype="float32")
        assert abs(len(x) / 16000 - rec["duration"]) < 0.01
        assert 0.5 < rec["duration"] < 20.0
        peak = float(np.abs(x).max())
        assert 0.05 < peak <= 10 ** (mc.PEAK_CAP_DBFS / 20) + 1e-3  # non-silent, not clipped
        active = np.sqrt(np.mean(x ** 2))
        assert active > 10 ** (-35 / 20)
        # edges trimmed: at most 0.2 s before the first / after the last speech frame
        hop = 160
        db = mc.frame_rms_db(x, hop)
        act = np.flatnonzero(mc.active_frames(db))
        assert act[0] * hop / 16000 <= 0.2 and (len(db) - 1 - act[-1]) * hop / 16000 <= 0.21


def test_val_and_train_sentences_are_disjoint(corpus):
    train = {r["text"] for r in _read(corpus / "manifest.jsonl")}
    val = {r["text"] for r in _read(corpus / "manifest_val.jsonl")}
    assert not train & val
    # and by construction for the whole plan, not just this tiny sample
    sentences, _ = mc.load_sentences()
    tr, va = mc.split_sentences(sentences, 0.02, 7)
    assert len(sentences) >= 1500
    assert not {s.sid for s in tr} & {s.sid for s in va}
    voices = mc.all_voices(["flite", "festival", "espeak-ng"])
    va_ids = {s.sid for s in va}
    stream = mc.train_stream(voices, tr, 7)
    assert not any(next(stream).sid in va_ids for _ in range(3000))


def test_ids_are_deterministic():
    sentences, _ = mc.load_sentences()
    tr, _ = mc.split_sentences(sentences, 0.02, 7)
    voices = mc.all_voices(["flite", "festival", "espeak-ng"])

    def ids(seed):
        stream = mc.train_stream(voices, tr, seed)
        return [next(stream).uid for _ in range(200)]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)
    assert len(set(ids(7))) == 200


def test_rerun_skips_existing_files(corpus):
    wavs = sorted(corpus.glob("wavs/*/*.wav"))
    before = {p: p.stat().st_mtime_ns for p in wavs}
    manifest = (corpus / "manifest.jsonl").read_text()
    res = _run("--out", corpus, "--max-utts", 6, "--seed", 7, "--jobs", 1, "--no-progress")
    assert res.returncode == 0, res.stderr
    summary = json.loads((corpus / "summary.json").read_text())
    assert summary["skipped_existing"] == summary["train"]["utts"] + summary["val"]["utts"]
    assert summary["built_hours_this_run"] == 0
    assert (corpus / "manifest.jsonl").read_text() == manifest
    assert {p: p.stat().st_mtime_ns for p in sorted(corpus.glob("wavs/*/*.wav"))} == before


def test_missing_tool_is_one_clear_line(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no synthesiser reachable
    res = _run("--out", tmp_path / "c", "--max-utts", 2, env=env)
    assert res.returncode == mc.EXIT_MISSING
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install" in lines[0] and "flite" in lines[0]
    assert not (tmp_path / "c").exists()
