"""Sound events: the synthesised classes, the Debian package clips and their licences, and the
data-set recipe (in-process, on a fake share root; no Debian sound package is needed)."""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hasrd.events import packages, recipe, synth
from hasrd.events.packages import EXTRA_DESCRIPTIONS, TABLE, Source, descriptions_for, find_clips, read_licence
from hasrd.events.recipe import SYNTH_LICENCE, prepare_clip
from hasrd.events.synth import CLASSES, DESCRIPTIONS, PEAK, make_event

FIELDS = {"path", "class", "descriptions", "source", "licence", "split", "seconds"}
BASE = ["--no-packages", "--per-class", "3", "--seconds", "0.5", "--no-progress"]


# ---- synthesised classes ----------------------------------------------------------------------


@pytest.mark.parametrize("sr, seconds", [(16000, 0.5), (8000, 0.3), (22050, 0.37)])
@pytest.mark.parametrize("name", list(CLASSES))
def test_every_class_has_the_length_and_peak(name, sr, seconds):
    x = make_event(name, seconds, sr, np.random.default_rng(1))
    assert x.shape == (int(round(seconds * sr)),) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert float(np.abs(x).max()) == pytest.approx(PEAK, abs=1e-6)


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("name", list(CLASSES))
def test_every_class_makes_a_20_ms_clip(name, sr):
    # wind's STFT frame was longer than such a clip (it failed); an audience's first clap could
    # fall after its end (the clip was all zeros)
    for seed in range(10):
        x = make_event(name, 0.02, sr, np.random.default_rng(seed))
        assert x.shape == (int(0.02 * sr),)
        assert float(np.abs(x).max()) == pytest.approx(PEAK, abs=1e-6), seed


@pytest.mark.parametrize("name", list(CLASSES))
def test_every_class_is_reproducible_from_its_seed(name):
    a = make_event(name, 0.4, 16000, np.random.default_rng(7))
    b = make_event(name, 0.4, 16000, np.random.default_rng(7))
    c = make_event(name, 0.4, 16000, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.allclose(a, c)


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("name", ["rain", "siren", "whistle"])
def test_frequency_tracks_stay_under_045_of_the_sample_rate(name, sr, monkeypatch):
    # these generators integrate a frequency track into a phase with np.cumsum; record every track
    # (rain's drop chirps went up to twice 4.5 kHz, above 0.45 * 16 kHz, and aliased)
    tracks = []
    cumsum = np.cumsum

    def spy(a, *args, **kwargs):
        tracks.append(np.asarray(a))
        return cumsum(a, *args, **kwargs)

    monkeypatch.setattr(synth.np, "cumsum", spy)
    for seed in range(20):
        make_event(name, 0.3, sr, np.random.default_rng(seed))
    monkeypatch.undo()
    assert tracks and max(float(t.max()) for t in tracks) <= 0.45 * sr * (1 + 1e-9)


def test_every_class_has_descriptions():
    assert set(DESCRIPTIONS) == set(CLASSES)
    for name, texts in DESCRIPTIONS.items():
        assert len(texts) >= 3 and len(set(texts)) == len(texts), name
        assert all(isinstance(t, str) and t.strip() == t and t for t in texts), name


def test_make_event_refuses_an_unknown_class_and_no_sample():
    with pytest.raises(ValueError, match="unknown sound-event class 'thunder'"):
        make_event("thunder", 1.0, 16000, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no sample"):
        make_event("bell", 0.00001, 16000, np.random.default_rng(0))


# ---- Debian package clips and their licences --------------------------------------------------

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake-sounds

Files: *
Copyright: 2001 Someone <someone@example.org>
License: GPL-2+
 This program is free software; you can redistribute it and/or modify
 it under the terms of the GNU General Public License.

Files: stereo/bell.oga
 stereo/other.oga
Copyright: 2005 First Holder,
 Second Part
 2007 Another Holder
License: CC-BY-SA-3.0
 Attribution-ShareAlike 3.0 Unported.

Files: debian/*
Copyright: 2010 A Packager
License: GPL-2+
"""

FREE_TEXT = """\
This package was debianized by someone.

Sounds: Creative Commons Attribution 3.0 for the pictures, see below.
The program is released under the GNU General Public License, version 2,
or (at your option) any later version.
"""


def _write_copyright(root: Path, package: str, text: str) -> None:
    path = packages.copyright_file(package, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_sound(path: Path, audio: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "OGG" if path.suffix in (".ogg", ".oga") else "WAV"
    sf.write(str(path), audio, sr, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")


def _tone(seconds: float, sr: int, f: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_licence_of_the_last_matching_files_paragraph(tmp_path):
    _write_copyright(tmp_path, "fake-sounds", DEP5)
    # a pattern names a path of the source tree: it matches the tail of the installed path
    got = read_licence("fake-sounds", "sounds/freedesktop/stereo/bell.oga", tmp_path)
    assert got == ("CC-BY-SA-3.0", "2005 First Holder, Second Part; 2007 Another Holder")
    assert read_licence("fake-sounds", "sounds/freedesktop/stereo/camera.oga", tmp_path) == (
        "GPL-2+", "2001 Someone <someone@example.org>")
    assert read_licence("other-package", "sounds/x.wav", tmp_path) is None


def test_licence_of_a_free_text_copyright_file(tmp_path):
    _write_copyright(tmp_path, "old-style", FREE_TEXT)
    licence, holders = read_licence("old-style", "anything.wav", tmp_path)
    assert licence == "CC-BY-3.0"  # the first licence named in the text
    _write_copyright(tmp_path, "gpl-only", FREE_TEXT.replace("Sounds: Creative Commons Attribution 3.0", ""))
    assert read_licence("gpl-only", "anything.wav", tmp_path)[0] == "GPL-2+"
    assert holders == f"see {packages.copyright_file('old-style', tmp_path)}"
    _write_copyright(tmp_path, "none", "All rights reserved.\n")
    assert read_licence("none", "anything.wav", tmp_path) is None


def test_find_clips_with_a_small_table(tmp_path):
    _write_copyright(tmp_path, "fake-sounds", DEP5.replace("Files: *\n", "Files: snd/*\n"))
    for name in ("b.wav", "a.wav"):
        _write_sound(tmp_path / "games/fake/snd" / name, _tone(0.1, 8000), 8000)
    _write_sound(tmp_path / "games/fake/lib/c.wav", _tone(0.1, 8000), 8000)  # no Files paragraph
    table = (
        Source("fake-sounds", "games/fake/snd/*.wav", "knock", ("a knock", "two knocks")),
        Source("fake-sounds", "games/fake/snd/a.wav", "bell"),  # the same file again: kept once
        Source("fake-sounds", "games/fake/lib/*.wav", "bell"),
        Source("fake-sounds", "games/fake/none-*.wav", "bell"),
        Source("absent", "games/absent/x.wav", "bell"),
        Source("absent", "games/absent/y.wav", "bell"),
    )
    clips, notes = find_clips(tmp_path, table)
    assert [c.file for c in clips] == ["games/fake/snd/a.wav", "games/fake/snd/b.wav"]
    assert all(c.label == "knock" and c.descriptions == ("a knock", "two knocks") for c in clips)
    assert clips[0].licence == "GPL-2+" and clips[0].copyright == "2001 Someone <someone@example.org>"
    assert clips[0].path == tmp_path / "games/fake/snd/a.wav"
    assert any("no licence found for games/fake/lib/c.wav" in n for n in notes)
    assert any("nothing matches games/fake/none-*.wav" in n for n in notes)
    assert sum("absent: not installed" in n for n in notes) == 1 and len(notes) == 3


def test_every_table_label_has_descriptions():
    assert not set(EXTRA_DESCRIPTIONS) & set(CLASSES)
    for src in TABLE:
        assert descriptions_for(src.label), src
        assert src.descriptions is None or len(src.descriptions) >= 3, src
    with pytest.raises(ValueError, match="no descriptions"):
        descriptions_for("thunder")


def test_prepare_clip_trims_cuts_and_normalises():
    sr = 8000
    assert prepare_clip(np.zeros(800), sr, 1.0) is None
    assert prepare_clip(np.full(800, 1e-4), sr, 1.0) is None  # under -60 dBFS
    x = np.concatenate([np.zeros(800), _tone(0.25, sr), np.zeros(1600)])
    y = prepare_clip(x, sr, 1.0)
    assert y.dtype == np.float32 and abs(y.size - (2000 + 2 * 40)) <= 2  # 5 ms kept each side
    assert float(np.abs(y).max()) == pytest.approx(PEAK, abs=1e-6)
    # longer than --seconds: cut, faded out, and the kept part has the peak even when the
    # loudest sample was cut off
    long = np.concatenate([_tone(1.0, sr, amp=0.2), _tone(0.1, sr, amp=0.9)])
    y = prepare_clip(long, sr, 0.5)
    assert y.size == 4000 and abs(float(y[-1])) < 0.01
    assert float(np.abs(y).max()) == pytest.approx(PEAK, abs=1e-3)


# ---- the recipe --------------------------------------------------------------------------------


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("events") / "out"
    assert recipe.main(["--out", str(out), *BASE]) == 0
    return out


def test_recipe_writes_the_documented_files(built):
    assert sorted(p.name for p in built.iterdir()) == [
        "LICENCES.md", "clips", "manifest.jsonl", "manifest_eval.jsonl", "manifest_train.jsonl", "recipe.json"]
    rows = _rows(built / "manifest.jsonl")
    assert len(rows) == 3 * len(CLASSES)
    assert sorted(p.relative_to(built).as_posix() for p in (built / "clips").rglob("*.wav")) == sorted(
        r["path"] for r in rows)
    for r in rows:
        assert set(r) == FIELDS
        assert r["path"].startswith(f"clips/{r['class']}/{r['class']}_0000")
        assert r["descriptions"] == DESCRIPTIONS[r["class"]]
        assert r["source"] == "synth" and r["licence"] == SYNTH_LICENCE and r["seconds"] == 0.5
        info = sf.info(str(built / r["path"]))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 8000, "PCM_16")
    audio, _ = sf.read(str(built / rows[0]["path"]))
    assert float(np.abs(audio).max()) == pytest.approx(PEAK, abs=1e-3)
    info = json.loads((built / "recipe.json").read_text())
    assert info["per_class"] == 3 and info["packages"] is False and info["share_root"] is None
    assert info["packages_used"] == {} and info["skipped"] == []
    assert info["clips"] == {"train": 2 * len(CLASSES), "eval": len(CLASSES)}
    assert "No clip comes from a Debian package." in (built / "LICENCES.md").read_text()


def test_recipe_splits_partition_the_manifest(built):
    rows = _rows(built / "manifest.jsonl")
    train, held = _rows(built / "manifest_train.jsonl"), _rows(built / "manifest_eval.jsonl")
    assert train == [r for r in rows if r["split"] == "train"]
    assert held == [r for r in rows if r["split"] == "eval"]
    assert len(train) + len(held) == len(rows) and {r["split"] for r in rows} == {"train", "eval"}
    counts = json.loads((built / "recipe.json").read_text())["classes"]
    for name in CLASSES:
        splits = [r["split"] for r in rows if r["class"] == name]
        assert splits.count("eval") == 1 and splits.count("train") == 2, name
        assert counts[name] == {"train": 2, "eval": 1}


@pytest.mark.parametrize("n, fraction, k", [(1, 0.5, 0), (2, 0.1, 1), (3, 0.9, 2), (20, 0.1, 2), (160, 0.1, 16)])
def test_held_out_share(n, fraction, k):
    held = recipe._held_out(n, fraction, np.random.default_rng(0))
    assert len(held) == k and held <= set(range(n))


def test_recipe_is_byte_identical_for_the_same_arguments(built, tmp_path):
    out = tmp_path / "again"
    assert recipe.main(["--out", str(out), *BASE]) == 0
    assert _hashes(out) == _hashes(built)


def test_a_larger_per_class_only_adds_clips(built, tmp_path):
    out = tmp_path / "more"
    assert recipe.main(["--out", str(out), *BASE, "--per-class", "5"]) == 0
    small, large = _hashes(built / "clips"), _hashes(out / "clips")
    assert len(large) == 5 * len(CLASSES)
    assert all(large[name] == digest for name, digest in small.items())
    # another seed makes other clips
    other = tmp_path / "seed"
    assert recipe.main(["--out", str(other), *BASE, "--seed", "1"]) == 0
    assert not set(_hashes(other / "clips").values()) & set(small.values())


def test_recipe_with_package_clips(tmp_path, capsys):
    share, sr = tmp_path / "share", 22050
    _write_copyright(share, "sound-theme-freedesktop", DEP5)
    _write_sound(share / "sounds/freedesktop/stereo/bell.oga",
                 np.stack([_tone(0.3, sr, 880.0), _tone(0.3, sr, 660.0)], axis=1), sr)
    _write_sound(share / "sounds/freedesktop/stereo/camera-shutter.oga", np.zeros(4000, np.float32), sr)
    _write_copyright(share, "tuxpaint-data", FREE_TEXT.replace("Sounds: Creative Commons Attribution 3.0", ""))
    # 0.2 s of silence, then a quiet tone and a loud click after the part that is kept
    harp = np.concatenate([np.zeros(int(0.2 * sr), np.float32), _tone(1.0, sr, amp=0.2), _tone(0.1, sr, amp=0.9)])
    _write_sound(share / "tuxpaint/sounds/harp.wav", harp, sr)

    out = tmp_path / "out"
    args = ["--out", str(out), "--per-class", "2", "--seconds", "0.5", "--share-root", str(share), "--no-progress"]
    assert recipe.main(args) == 0
    err = capsys.readouterr().err
    assert "recipe: note: sound-theme-freedesktop: sounds/freedesktop/stereo/camera-shutter.oga is silent, skipped" in err
    assert "recipe: note: pingus-data: not installed" in err

    rows = {r["path"]: r for r in _rows(out / "manifest.jsonl")}
    deb = [r for r in rows.values() if r["source"] != "synth"]
    assert sorted(r["source"] for r in deb) == [
        "deb:sound-theme-freedesktop:sounds/freedesktop/stereo/bell.oga", "deb:tuxpaint-data:tuxpaint/sounds/harp.wav"]
    bell = rows["clips/bell/bell_sound-theme-freedesktop_bell.wav"]
    assert set(bell) == FIELDS | {"copyright"} and bell["descriptions"] == DESCRIPTIONS["bell"]
    assert bell["licence"] == "CC-BY-SA-3.0" and bell["copyright"] == "2005 First Holder, Second Part; 2007 Another Holder"
    harp_row = rows["clips/harp/harp_tuxpaint-data_harp.wav"]
    assert harp_row["licence"] == "GPL-2+" and harp_row["seconds"] == 0.5 and harp_row["split"] == "train"
    assert harp_row["descriptions"] == EXTRA_DESCRIPTIONS["harp"]
    for r in deb:
        audio, file_sr = sf.read(str(out / r["path"]))
        assert file_sr == 16000 and audio.ndim == 1
        assert float(np.abs(audio).max()) == pytest.approx(PEAK, abs=2e-3), r["path"]
    assert not (out / "clips" / "camera_shutter").exists()

    info = json.loads((out / "recipe.json").read_text())
    assert info["packages_used"] == {"sound-theme-freedesktop": 1, "tuxpaint-data": 1}
    assert info["share_root"] == str(share) and info["classes"]["bell"] == {"train": 2, "eval": 1}
    assert any("camera-shutter.oga is silent" in n for n in info["skipped"])
    licences = (out / "LICENCES.md").read_text()
    assert "## sound-theme-freedesktop" in licences and "## tuxpaint-data" in licences
    assert "| clips/harp/harp_tuxpaint-data_harp.wav | tuxpaint/sounds/harp.wav | GPL-2+ |" in licences


@pytest.mark.parametrize("extra, message", [
    ([], "exists (use --force to replace it)"),
    (["--per-class", "0"], "--per-class 0: must be at least 1"),
    (["--eval-fraction", "1"], "--eval-fraction 1.0: must be between 0 and 1"),
    (["--eval-fraction", "0"], "--eval-fraction 0.0: must be between 0 and 1"),
    (["--seconds", "0"], "--seconds 0.0: must be more than 0"),
    (["--sample-rate", "4000"], "--sample-rate 4000: must be at least 8000"),
])
def test_recipe_refusals(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    if not extra:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    assert recipe.main(["--out", str(out), *BASE, *extra]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recipe: error:") and message in lines[0]
    if extra:
        assert not out.exists()
    else:
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ([] if extra else ["out"])  # no temp folder beside it


def test_recipe_force_replaces_a_folder_but_not_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert recipe.main(["--out", str(out), *BASE, "--per-class", "1", "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "manifest.jsonl").is_file()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert recipe.main(["--out", str(afile), *BASE, "--force"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("recipe: error:")
    assert afile.read_text() == "x"


def test_an_interrupted_recipe_leaves_no_folder(tmp_path, capsys, monkeypatch):
    import hasrd.io.audio

    save, calls = hasrd.io.audio.save_audio, []

    def failing(path, audio, sr, **kwargs):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("No space left on device")
        save(path, audio, sr, **kwargs)

    monkeypatch.setattr(hasrd.io.audio, "save_audio", failing)
    out = tmp_path / "out"
    assert recipe.main(["--out", str(out), *BASE]) == 1
    assert capsys.readouterr().err.strip().splitlines() == ["recipe: error: No space left on device"]
    assert list(tmp_path.iterdir()) == []


def test_synthesised_clip_seed_is_per_class_and_index(built):
    # clip i of class c comes from the seed (seed, crc32(c), i): the recipe's clip is the generator's
    audio, _ = sf.read(str(built / "clips/siren/siren_00002.wav"), dtype="int16")
    x = make_event("siren", 0.5, 16000, np.random.default_rng([0, zlib.crc32(b"siren"), 2]))
    assert np.abs(np.round(np.clip(x, -1, 1) * 32767) - audio).max() <= 1
