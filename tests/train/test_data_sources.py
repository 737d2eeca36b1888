"""data.train / data.val as a list of sources (speech and sound events), and the spread val pick."""
import json

import soundfile as sf

from hasrd.io.manifest import spread
from hasrd.train import main as train_main
from hasrd.train.codec_task import read_sources
from tests.conftest import TINY_CONFIGS, speechlike


def _folder(d, n, seed):
    d.mkdir()
    for i in range(n):
        sf.write(d / f"c{i}.wav", speechlike(0.6, seed=seed + i)[0, 0].numpy(), 16000)
    return d


def test_a_list_of_sources_is_read_in_order(tmp_path):
    a, b = _folder(tmp_path / "a", 3, 0), _folder(tmp_path / "b", 2, 10)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "b/c0.wav", "class": "bell"}) + "\n")
    entries = read_sources([str(a), str(b), str(manifest)])
    assert [e.path.parent.name for e in entries] == ["a", "a", "a", "b", "b", "b"]
    assert [e.path for e in read_sources(str(a))] == [e.path for e in entries[:3]]


def test_spread_takes_both_ends_and_every_part():
    items = list(range(10))
    assert spread(items, 2) == [0, 9]
    assert spread(items, 4) == [0, 3, 6, 9]
    assert spread(items, 10) == items and spread(items, 50) == items
    assert spread(items, 0) == []
    # two sources of 6 and 4: a pick of 4 holds some of each
    picked = spread(["s"] * 6 + ["e"] * 4, 4)
    assert "s" in picked and "e" in picked


def test_training_on_two_sources_runs_and_validates(tmp_path):
    a, b = _folder(tmp_path / "speech", 3, 0), _folder(tmp_path / "events", 3, 20)
    out = tmp_path / "run"
    rc = train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(out), "--no-tensorboard",
                     f"data.train=[{a},{b}]", f"data.val=[{a},{b}]", "train.val_files=2", "train.val_every=2",
                     "teacher.n_units=16", "train.kmeans_frames=200"])
    assert rc == 0 and (out / "export").is_dir()
    vals = [r for r in map(json.loads, open(out / "metrics.jsonl")) if any(k.startswith("val/") for k in r)]
    assert vals, "no validation was logged"


def test_a_missing_source_in_the_list_is_one_clear_error(tmp_path, capsys):
    a = _folder(tmp_path / "speech", 2, 0)
    rc = train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(tmp_path / "run"), "--no-tensorboard",
                     f"data.train=[{a},{tmp_path / 'nope.jsonl'}]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "nope.jsonl" in err[0]
