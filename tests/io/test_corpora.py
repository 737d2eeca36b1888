"""Lhotse manifests and Hugging Face datasets as corpora: read_manifest, ``hasrd encode``, the
teacher cache, training and ``evaluate.py --data`` (tiny data the tests write; nothing from a hub)."""
from __future__ import annotations

import csv
import gzip
import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf

from hasrd.io.audio import load_audio
from hasrd.io.entry import entry_info, iter_entry_chunks, load_entry
from hasrd.io.manifest import ManifestError, read_manifest
from tests.conftest import TINY_CONFIGS, speechlike, tiny_codec

lhotse = pytest.importorskip("lhotse")
datasets = pytest.importorskip("datasets")

SR = 16000
SECONDS = (1.0, 1.2, 0.8)
TEXTS = ("one two", "three four", "five six")
PART = (0.2, 0.5)  # offset, duration of the partial cuts
FAST_EVAL = ["--asr", "none", "--speaker", "none", "--mos", "none", "--no-probes", "--jobs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wavs")
    paths = []
    for i, s in enumerate(SECONDS):
        p = d / f"utt{i}.wav"
        sf.write(p, speechlike(s, seed=i)[0, 0].numpy() * (1 + 0.1 * i), SR, subtype="FLOAT")
        paths.append(p)
    return paths


def write_lhotse(folder, wavs) -> dict:
    """recordings/supervisions/cuts manifests (lhotse's own API) and partial cuts of the same recordings."""
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    folder.mkdir(parents=True, exist_ok=True)
    recs = RecordingSet.from_recordings(Recording.from_file(p) for p in wavs)
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=f"sup{i}", recording_id=r.id, start=0.0, duration=r.duration, text=TEXTS[i],
                           speaker=f"spk{i}") for i, r in enumerate(recs))
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    part = CutSet.from_cuts(c.truncate(offset=PART[0], duration=PART[1]).with_id(f"{c.recording_id}-part") for c in cuts)
    out = {"recordings": folder / "recordings_tiny.jsonl.gz", "supervisions": folder / "supervisions_tiny.jsonl.gz",
           "cuts": folder / "cuts_tiny.jsonl.gz", "part": folder / "cuts_part.jsonl.gz"}
    recs.to_file(out["recordings"])
    sups.to_file(out["supervisions"])
    cuts.to_file(out["cuts"])
    part.to_file(out["part"])
    return out


@pytest.fixture(scope="module")
def lhotse_set(tmp_path_factory, wavs):
    return write_lhotse(tmp_path_factory.mktemp("lhotse"), wavs)


def wav_bytes(path) -> bytes:
    return path.read_bytes()


@pytest.fixture(scope="module")
def hf_set(tmp_path_factory, wavs):
    """A save_to_disk Dataset with an Audio column (encoded WAV bytes), text, id and speaker columns."""
    d = tmp_path_factory.mktemp("hf") / "tiny_ds"
    ds = datasets.Dataset.from_dict({
        "audio": [{"bytes": wav_bytes(p), "path": p.name} for p in wavs],
        "text": list(TEXTS), "id": [f"row{i}" for i in range(len(wavs))], "speaker_id": [7, 8, 9],
    }).cast_column("audio", datasets.Audio())
    ds.save_to_disk(str(d))
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    tiny_codec("hasrd").save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------------
# reading


def test_lhotse_recordings_cuts_and_partial_cuts(lhotse_set, wavs):
    recs = read_manifest(lhotse_set["recordings"])
    assert [e.path for e in recs] == wavs
    assert [e.text for e in recs] == list(TEXTS)  # from the SupervisionSet beside it
    assert [e.id for e in recs] == ["utt0", "utt1", "utt2"] and recs[0].extra == {"speaker": "spk0"}
    assert all(e.span is None for e in recs)

    cuts = read_manifest(lhotse_set["cuts"])
    assert [e.path for e in cuts] == wavs and [e.text for e in cuts] == list(TEXTS)
    assert all(e.span is None for e in cuts)  # whole recordings: read as the files
    assert load_entry(cuts[1], SR)[0].shape == (1, int(SECONDS[1] * SR))

    part = read_manifest(lhotse_set["part"])
    assert [e.id for e in part] == ["utt0-part", "utt1-part", "utt2-part"]
    assert all(e.span == PART for e in part)
    whole = load_audio(wavs[1], SR)[0]
    a, sr = load_entry(part[1], SR)
    first, n = int(PART[0] * SR), int(PART[1] * SR)
    assert sr == SR and np.array_equal(a, whole[:, first:first + n])
    assert entry_info(part[1])["frames"] == n
    # a window of the cut: seconds of the cut, not of the file
    b, _ = load_entry(part[1], SR, start=0.1, duration=0.2)
    assert np.array_equal(b, whole[:, first + 1600:first + 1600 + 3200])
    chunks = list(iter_entry_chunks(part[1], SR, 0.15))
    assert np.allclose(np.concatenate(chunks, axis=1), a, atol=1e-6)
    assert part[0].key != cuts[0].key and part[0].name.endswith("#utt0-part")


def test_detection_rule(tmp_path, lhotse_set, wavs):
    from hasrd.io.corpora import lhotse_kind

    assert lhotse_kind(lhotse_set["cuts"]) == "cuts" and lhotse_kind(lhotse_set["recordings"]) == "recordings"
    plain = tmp_path / "cuts_plain.jsonl"  # an uncompressed Lhotse manifest, found by its content
    plain.write_text(gzip.open(lhotse_set["part"], "rt").read())
    assert lhotse_kind(plain) == "cuts" and [e.id for e in read_manifest(plain)][0] == "utt0-part"
    mine = tmp_path / "manifest.jsonl"  # hasrd's own JSONL stays hasrd's
    mine.write_text(json.dumps({"path": str(wavs[0]), "text": "hi"}) + "\n")
    assert lhotse_kind(mine) is None and read_manifest(mine)[0].text == "hi"
    with pytest.raises(ManifestError, match="SupervisionSet holds no audio"):
        read_manifest(lhotse_set["supervisions"])


def test_hf_dataset_entries_are_row_references(hf_set, wavs):
    entries = read_manifest(f"hf-dataset:{hf_set}")
    assert [e.id for e in entries] == ["row0", "row1", "row2"]
    assert [e.text for e in entries] == list(TEXTS) and entries[2].extra == {"speaker": "9"}
    assert entries[0].name == f"hf-dataset:{hf_set}#row0" and entries[0].key == "tiny_ds:#row0"
    for e, p in zip(entries, wavs):
        assert np.array_equal(load_entry(e, SR)[0], load_audio(p, SR)[0])
        assert entry_info(e)["frames"] == sf.info(p).frames
    assert np.array_equal(load_entry(entries[1], 8000)[0], load_audio(wavs[1], 8000)[0])  # resampled alike
    import pickle  # DataLoader workers get the entries pickled: the reference must survive it

    again = pickle.loads(pickle.dumps(entries))
    assert np.array_equal(load_entry(again[2])[0], load_entry(entries[2])[0])

    with pytest.raises(ManifestError, match="need random access"):
        read_manifest(f"hf-dataset:{hf_set}?streaming=1")
    streamed = read_manifest(f"hf-dataset:{hf_set}?streaming=1", streaming_ok=True)
    assert not isinstance(streamed, list)
    got = list(streamed)
    assert [e.id for e in got] == ["row0", "row1", "row2"]
    assert np.array_equal(load_entry(got[1], SR)[0], load_audio(wavs[1], SR)[0])
    # column options, and a bad one
    by_index = read_manifest(f"hf-dataset:{hf_set}?id=speaker_id&text=id")
    assert [e.id for e in by_index] == ["7", "8", "9"] and by_index[0].text == "row0"
    with pytest.raises(ManifestError, match="no column 'nope'"):
        read_manifest(f"hf-dataset:{hf_set}?text=nope")


def test_hf_dataset_from_the_local_hub_cache_offline(tmp_path, hf_set, monkeypatch):
    """A hub dataset id resolves from a snapshot in the local hub cache, offline (no network)."""
    hub = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "datasets--someone--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / "data").mkdir(parents=True)
    datasets.load_from_disk(str(hf_set)).to_parquet(str(repo / "snapshots" / commit / "data" / "train-00000-of-00001.parquet"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds_cache"))
    entries = read_manifest("hf-dataset:someone/tiny:train")
    assert [e.id for e in entries] == ["row0", "row1", "row2"] and entries[0].key == "someone/tiny:train#row0"
    streamed = list(read_manifest("hf-dataset:someone/tiny?streaming=1", streaming_ok=True))  # one split: no need to name it
    assert [e.text for e in streamed] == list(TEXTS)


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_are_one_line(tmp_path, wavs, hf_set, model_dir, monkeypatch, capsys):
    from hasrd.cli import main as cli_main
    from hasrd.train import main as train_main

    copies = []
    for p in wavs:
        c = tmp_path / "audio" / p.name
        c.parent.mkdir(exist_ok=True)
        c.write_bytes(p.read_bytes())
        copies.append(c)
    man = write_lhotse(tmp_path / "man", copies)
    copies[1].unlink()
    copies[2].unlink()
    with pytest.raises(ManifestError) as info:
        read_manifest(man["cuts"])
    assert str(info.value) == f"{man['cuts']}: 2 of the 3 audio files of this Lhotse manifest are missing (first: {copies[1]})"

    out = tmp_path / "tokens"
    assert cli_main(["encode", str(man["cuts"]), "-o", str(out), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hasrd: error: {info.value}"] and not out.exists()  # nothing written
    assert train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(tmp_path / "run"), "--no-tensorboard",
                       f"data.train={man['cuts']}"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"train.py: error: {info.value}"

    noaudio = tmp_path / "noaudio"
    datasets.Dataset.from_dict({"text": ["a"], "speaker": ["s"]}).save_to_disk(str(noaudio))
    capsys.readouterr()  # datasets' progress bar
    assert cli_main(["encode", f"hf-dataset:{noaudio}", "-o", str(out), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no audio column" in err[0] and "the columns are text, speaker" in err[0]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty_ds"))
    with pytest.raises(ManifestError) as info:
        read_manifest("hf-dataset:nobody/no-such-set:test")
    msg = str(info.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE is set" in msg and "hf download nobody/no-such-set --repo-type dataset" in msg
    assert f"{tmp_path / 'empty_hub'}" in msg

    monkeypatch.setitem(sys.modules, "lhotse", None)  # as if not installed
    with pytest.raises(ManifestError, match=r'needs the lhotse package: pip install "hasrd\[corpora\]"'):
        read_manifest(man["recordings"])
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ManifestError, match=r'needs the datasets package: pip install "hasrd\[corpora\]"'):
        read_manifest(f"hf-dataset:{hf_set}")


def test_mixed_cuts_are_refused(tmp_path, wavs):
    from lhotse import CutSet, Recording

    cut = Recording.from_file(wavs[0]).to_cut()
    CutSet.from_cuts([cut.pad(duration=2.0)]).to_file(tmp_path / "cuts_padded.jsonl.gz")
    with pytest.raises(ManifestError, match="is a MixedCut .* one recording only"):
        read_manifest(tmp_path / "cuts_padded.jsonl.gz")


# ------------------------------------------------------------------------------------------------
# hasrd encode (corpus mode)


def _records(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["lhotse", "hf", "hf-stream"])
def test_encode_corpus_mode(kind, tmp_path, lhotse_set, hf_set, model_dir, capsys):
    from hasrd.cli import main as cli_main
    from hasrd.io.tokenfile import load_tokens

    src = {"lhotse": str(lhotse_set["part"]), "hf": f"hf-dataset:{hf_set}",
           "hf-stream": f"hf-dataset:{hf_set}?streaming=1"}[kind]
    ids = ["utt0-part", "utt1-part", "utt2-part"] if kind == "lhotse" else ["row0", "row1", "row2"]
    lengths = [PART[1]] * 3 if kind == "lhotse" else list(SECONDS)
    out = tmp_path / "tokens"
    assert cli_main(["encode", src, "-o", str(out), "--model", str(model_dir), "--n-q", "2"]) == 0
    assert "encoded 3 file(s)" in capsys.readouterr().out
    recs = _records(out)
    assert [r["path"] for r in recs] == [f"{i}.hsrd" for i in ids]  # named by the corpus's ids
    for r, seconds in zip(recs, lengths):
        codes, meta = load_tokens(out / r["path"])
        assert meta["n_q"] == 2 and abs(meta["length"] / meta["orig_sample_rate"] - seconds) < 1e-6
        assert r["source"].endswith("#" + r["path"][:-5])
    # a second run skips what is done (hasrd expanded the corpus: resumable)
    assert cli_main(["encode", src, "-o", str(out), "--model", str(model_dir), "--n-q", "2"]) == 0
    assert "skipped 3 already done" in capsys.readouterr().out
    # the same codes as encoding the audio itself
    first = read_manifest(src, streaming_ok=True)
    first = next(iter(first))
    alone = tmp_path / "alone.wav"
    sf.write(alone, load_entry(first)[0][0], SR, subtype="FLOAT")
    assert cli_main(["encode", str(alone), "-o", str(tmp_path / "alone.hsrd"), "--model", str(model_dir), "--n-q", "2"]) == 0
    assert np.array_equal(load_tokens(tmp_path / "alone.hsrd")[0], load_tokens(out / f"{ids[0]}.hsrd")[0])


# ------------------------------------------------------------------------------------------------
# training, the teacher cache, evaluation


def _train(out, src, *extra):
    from hasrd.train import main as train_main

    return train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(out), "--no-tensorboard",
                       f"data.train={src}", "teacher.n_units=16", "train.kmeans_frames=200", "train.max_steps=2",
                       *extra])


def _steps(out):
    return [r for r in map(json.loads, open(out / "metrics.jsonl")) if "loss/total" in r]


def test_training_on_lhotse_partial_cuts(tmp_path, lhotse_set):
    """On-the-fly teacher targets (whole cut) and validation on the cuts."""
    assert _train(tmp_path / "run", lhotse_set["part"], f"data.val={lhotse_set['part']}", "train.val_every=2",
                  "train.segment_seconds=0.4") == 0
    steps = _steps(tmp_path / "run")
    assert [r["step"] for r in steps] == [1, 2] and all(np.isfinite(r["loss/total"]) for r in steps)
    assert any("val/mel" in r for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl")))
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()


def test_teacher_cache_and_training_on_a_dataset(tmp_path, hf_set, lhotse_set, capsys):
    from hasrd.config import load_config
    from hasrd.teachers.cache import TeacherCache, data_root, main as cache_main, relative_key

    src = f"hf-dataset:{hf_set}"
    common = ["teacher.n_units=16", "train.kmeans_frames=200"]
    assert cache_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output", str(tmp_path / "cache"),
                       f"data.train={src}", *common]) == 0
    assert "cached 3 file(s)" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").glob("??/*.safetensors"))) == 3
    assert _train(tmp_path / "run", src, f"teacher.cache={tmp_path / 'cache'}", f"data.val={src}", "train.val_every=2") == 0
    assert [r["step"] for r in _steps(tmp_path / "run")] == [1, 2]

    # Lhotse partial cuts: one cache file per cut, keyed by the file and its span
    cfg = load_config(TINY_CONFIGS["hasrd"], [f"data.train={lhotse_set['part']}", *common])
    assert cache_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output", str(tmp_path / "cache_l"),
                       f"data.train={lhotse_set['part']}", *common]) == 0
    entries = read_manifest(lhotse_set["part"])
    rel, _ = relative_key(entries[0], data_root(cfg["data"]["train"]))
    assert rel.endswith("utt0.wav#0.200000+0.500000")
    cache = TeacherCache(tmp_path / "cache_l")
    cache.check({"type": "mfcc"}, 16)
    cache.bind(entries, data_root(cfg["data"]["train"]))  # every cut is there
    assert cache.read(0, 0, 5)["features"].shape == (5, 39)


@pytest.mark.parametrize("kind", ["lhotse", "hf", "hf-stream"])
def test_evaluate_on_each(kind, tmp_path, lhotse_set, hf_set, model_dir, capsys):
    from hasrd.eval import main as eval_main

    src = {"lhotse": str(lhotse_set["part"]), "hf": f"hf-dataset:{hf_set}",
           "hf-stream": f"hf-dataset:{hf_set}?streaming=1"}[kind]
    out = tmp_path / "eval"
    assert eval_main(["--model", str(model_dir), "--n-q", "1", "--data", src, *FAST_EVAL, "--output", str(out)]) == 0
    capsys.readouterr()
    with open(out / "per_file.csv") as fh:
        rows = list(csv.DictReader(fh))
    ids = ["utt0-part", "utt1-part", "utt2-part"] if kind == "lhotse" else ["row0", "row1", "row2"]
    assert sorted({r["utt"] for r in rows}) == ids
    assert {r["system"] for r in rows} == {"reference", "hasrd:" + os.path.basename(model_dir) + "@nq1"}
    ref = {r["utt"]: r for r in rows if r["system"] == "reference"}
    want = [PART[1]] * 3 if kind == "lhotse" else list(SECONDS)
    assert [float(ref[i]["duration"]) for i in ids] == pytest.approx(want)
    assert [ref[i]["ref_text"] for i in ids] == list(TEXTS)
    assert all(r["error"] == "" for r in rows)
