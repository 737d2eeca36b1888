"""scripts/augment_set.py: a fixed, reproducible channel-augmented copy of a speech set."""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from hasrd.io.manifest import read_manifest
from tests.conftest import speechlike
from tests.scripts import load_script


def _set(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "m.jsonl", "w") as fh:
        for i in range(3):
            sf.write(src / f"u{i}.wav", speechlike(1.0, seed=i).numpy()[0, 0], 16000)
            fh.write(json.dumps({"path": f"u{i}.wav", "text": f"utterance {i}", "voice": "v"}) + "\n")
    return src / "m.jsonl"


def test_writes_a_reproducible_augmented_copy_with_texts(tmp_path):
    mod, manifest = load_script("augment_set"), _set(tmp_path)
    assert mod.main([str(manifest), "--out", str(tmp_path / "a")]) == 0
    assert mod.main([str(manifest), "--out", str(tmp_path / "b")]) == 0
    assert mod.main([str(manifest), "--out", str(tmp_path / "c"), "--seed", "7"]) == 0
    entries = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert [e.text for e in entries] == ["utterance 0", "utterance 1", "utterance 2"]
    assert entries[0].extra["voice"] == "v"
    for i, e in enumerate(entries):
        y, sr = sf.read(e.path)
        x, _ = sf.read(manifest.parent / f"u{i}.wav")
        assert sr == 16000 and y.shape == x.shape and np.abs(y).max() <= 0.99
        assert not np.allclose(x, y, atol=1e-3)  # p_eq is 1 by default: every file is coloured
        assert np.array_equal(y, sf.read(tmp_path / "b" / "wavs" / f"{i:04d}.wav")[0])
    assert not all(np.array_equal(sf.read(tmp_path / "a" / "wavs" / f"{i:04d}.wav")[0],
                                  sf.read(tmp_path / "c" / "wavs" / f"{i:04d}.wav")[0]) for i in range(3))
    assert json.load(open(tmp_path / "a" / "augment.json"))["settings"]["p_eq"] == 1.0


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    mod, manifest = load_script("augment_set"), _set(tmp_path)
    for argv in ([str(manifest), "--out", str(tmp_path / "x"), "--set", "p_reverb=3"],
                 [str(manifest), "--out", str(tmp_path / "x"), "--set", "p_room=1"],
                 [str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]):
        capsys.readouterr()
        assert mod.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("augment_set:"), err
    assert not (tmp_path / "x").exists()
    assert mod.main([str(manifest), "--out", str(tmp_path / "y")]) == 0
    assert mod.main([str(manifest), "--out", str(tmp_path / "y")]) == 2  # never overwrites
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "y"]  # no temporary folder left
