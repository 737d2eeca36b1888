"""scripts/gpu_bundle.py and scripts/gpu_run.py: what can be tested without an accelerator."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from hasrd.io.audio import load_audio
from hasrd.io.manifest import read_manifest
from tests.conftest import speechlike
from tests.scripts import load_script

needs_opusenc = pytest.mark.skipif(shutil.which("opusenc") is None, reason="opusenc (opus-tools) not installed")


def _corpus(tmp_path, name="corpus", n=3, seconds=1.0):
    d = tmp_path / name
    (d / "wavs" / "v").mkdir(parents=True)
    lines = []
    for i in range(n):
        sf.write(d / "wavs" / "v" / f"u{i}.wav", speechlike(seconds, seed=i).numpy()[0, 0], 16000)
        lines.append({"path": f"wavs/v/u{i}.wav", "text": f"utterance {i}", "voice": "v", "duration": seconds})
    with open(d / "manifest.jsonl", "w") as fh:
        fh.writelines(json.dumps(o) + "\n" for o in lines[:-1])
    with open(d / "manifest_val.jsonl", "w") as fh:
        fh.write(json.dumps(lines[-1]) + "\n")
    return d


def test_manifest_rewriting_keeps_every_field_and_points_at_the_opus_files(tmp_path):
    mod = load_script("gpu_bundle")
    d = tmp_path / "set"
    d.mkdir()
    outside = tmp_path / "elsewhere" / "x.wav"
    with open(d / "m.jsonl", "w") as fh:
        fh.write(json.dumps({"path": "wavs/a.wav", "text": "a", "speaker": "s1", "noisy": "noisy/a.flac"}) + "\n\n")
        fh.write(json.dumps({"path": str(outside), "duration": 1.5}) + "\n")
    items = mod.rewrite_manifest(d / "m.jsonl", "set")
    (o1, src1, jobs1), (o2, src2, jobs2) = items
    assert o1 == {"path": "wavs/a.opus", "text": "a", "speaker": "s1", "noisy": "noisy/a.opus"}
    assert src1 == d / "wavs" / "a.wav" and jobs1 == {"set/wavs/a.opus": d / "wavs" / "a.wav",
                                                      "set/noisy/a.opus": d / "noisy" / "a.flac"}
    assert o2["path"].startswith("_ext/") and o2["path"].endswith("_x.opus") and o2["duration"] == 1.5
    assert src2 == outside and list(jobs2.values()) == [outside]
    with open(d / "bad.jsonl", "w") as fh:
        fh.write('{"text": "no path"}\n')
    with pytest.raises(mod.BundleError, match="bad.jsonl:1"):
        mod.rewrite_manifest(d / "bad.jsonl", "set")


def test_tags_are_unique_and_hours_pick_a_seeded_subset_in_order(tmp_path):
    mod = load_script("gpu_bundle")
    assert mod.manifest_tag(tmp_path / "corpus" / "m.jsonl", set()) == "corpus"
    assert mod.manifest_tag(tmp_path / "corpus" / "m.jsonl", {"corpus"}) == "corpus_2"
    durs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert mod.select_hours(durs, durs, None) == list(range(6))
    assert mod.select_hours(durs, durs, 100.0) == list(range(6))
    pick = mod.select_hours(durs, durs, 10.0, seed=3)
    assert pick == sorted(pick) and sum(durs[i] for i in pick) <= 10.0 and pick
    assert pick == mod.select_hours(durs, durs, 10.0, seed=3)
    assert mod.is_val(tmp_path / "manifest_val.jsonl") and not mod.is_val(tmp_path / "manifest.jsonl")


@needs_opusenc
def test_a_bundle_of_two_corpora_reads_back_through_hasrds_loader(tmp_path, capsys):
    mod = load_script("gpu_bundle")
    a, b = _corpus(tmp_path / "x"), _corpus(tmp_path / "y", n=2)
    out = tmp_path / "bundle"
    args = ["--out", str(out), "--modules", "", "--skip-quality", "--jobs", "1", "--bitrate", "24"]
    for d in (a, b):
        args += ["--manifest", str(d / "manifest.jsonl"), "--manifest", str(d / "manifest_val.jsonl")]
    assert mod.main(args) == 0
    assert (out / "SIZE.txt").read_text().count("MiB") >= 6
    train, val = read_manifest(out / "corpus" / "train.jsonl"), read_manifest(out / "corpus" / "val.jsonl")
    assert [e.text for e in train] == ["utterance 0", "utterance 1", "utterance 0"]  # corpus x's two, then y's one
    assert [e.path.relative_to(out / "corpus").as_posix() for e in val] == ["corpus/wavs/v/u2.opus",
                                                                            "corpus_2/wavs/v/u1.opus"]
    per = read_manifest(out / "corpus" / "corpus" / "manifest.jsonl")
    assert per[0].extra == {"voice": "v", "duration": 1.0}
    sources = {"corpus": a, "corpus_2": b}
    for e in train + val:
        tag, rel = e.path.relative_to(out / "corpus").as_posix().split("/", 1)
        y, sr = load_audio(e.path)  # Ogg/Opus through the project's one loader
        x, _ = load_audio(sources[tag] / rel.replace(".opus", ".wav"))
        assert sr == 16000 and y.shape == x.shape
        assert np.corrcoef(x[0], y[0])[0, 1] > 0.9
    encoded = {p: p.read_bytes() for p in (out / "corpus").rglob("*.opus")}
    # a subset: 2 of the 3 training seconds; the files kept are not encoded again, the others go
    assert mod.main(args + ["--hours", str(2.0 / 3600)]) == 0
    assert len(read_manifest(out / "corpus" / "train.jsonl")) == 2
    assert len(read_manifest(out / "corpus" / "val.jsonl")) == 2
    left = list((out / "corpus").rglob("*.opus"))
    assert len(left) == 4 and all(p.read_bytes() == encoded[p] for p in left)
    capsys.readouterr()
    assert mod.main(args + ["--limit-mib", "1"]) == 1  # the repository alone is over 1 MiB
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and "--hours" in err[0], err


def test_gpu_run_rates_and_wheel_names():
    mod = load_script("gpu_run")
    rows = [{"step": s, "samples_per_s": s * 4 / (1.0 + 0.5 * s)} for s in range(1, 21)]  # 1 s start-up, 0.5 s a step
    r = mod.rate_between(rows, 10, 20, 4)
    assert r["steps_per_s"] == pytest.approx(2.0) and r["samples_per_s"] == pytest.approx(8.0)
    assert mod.rate_between(rows, 10, 30, 4) is None
    assert mod.wheel_dist(mod.Path("vector_quantize_pytorch-1.32.0-py3-none-any.whl")) == ("vector-quantize-pytorch", "1.32.0")


def test_gpu_run_without_a_bundle_is_one_clear_error(tmp_path, capsys):
    mod = load_script("gpu_run")
    rc = mod.main(["--cpu-dry-run", "--out", str(tmp_path / "out"), "--bundle", str(tmp_path / "none"),
                   "--work", str(tmp_path / "work")])
    assert rc == 1
    checks = json.loads((tmp_path / "out" / "checks.json").read_text())
    assert "gpu_bundle.sh" in checks["error"] and checks["mode"] == "cpu-dry-run"
    assert "error:" in (tmp_path / "out" / "log.txt").read_text()
    assert mod.main(["--cpu-dry-run", "--work", str(tmp_path / "work"), "--out", ""]) == 2


def test_gpu_run_installs_nothing_when_every_wheel_is_present(tmp_path, capsys):
    mod = load_script("gpu_run")
    assert mod.install_wheels(tmp_path / "no_wheels", tmp_path / "site", "python", dry_run=False)["installed"] == []
    w = tmp_path / "w"
    w.mkdir()
    (w / "numpy-0.0.1-py3-none-any.whl").write_bytes(b"")  # present here: never installed, version noted
    res = mod.install_wheels(w, tmp_path / "site", "python", dry_run=False)
    assert res["installed"] == [] and res["present"][0].startswith("numpy==") and "carried 0.0.1" in res["present"][0]
    assert not (tmp_path / "site").exists()
