"""The precomputed teacher cache: same targets as on the fly, sharded build, skips, refusals."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from hasrd.config import load_config
from hasrd.io.manifest import read_manifest
from hasrd.teachers import build_teacher
from hasrd.teachers.cache import (
    INDEX_NAME,
    KMEANS_NAME,
    TeacherCache,
    TeacherCacheError,
    build_cache,
    data_root,
    file_for,
    main as cache_main,
    relative_key,
)
from hasrd.teachers.targets import on_the_fly_targets
from hasrd.train.data import CropConfig, CropDataset, collate_crops
from tests.conftest import ROOT, TINY_CONFIGS, speechlike

N_FILES = 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Files of different lengths (one shorter than a training crop), some in a sub-folder."""
    d = tmp_path_factory.mktemp("corpus")
    (d / "spk").mkdir()
    for i in range(N_FILES):
        seconds = [1.0, 0.73, 1.31, 0.3, 0.9, 1.1][i]
        x = speechlike(seconds, seed=i)[0, 0].numpy() * (1 + 0.2 * i)
        sf.write(d / ("spk" if i % 2 else ".") / f"utt{i}.wav", x, 16000)
    return d


def config(corpus, name="hasrd", *extra):
    return load_config(TINY_CONFIGS[name], [f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200", *extra])


@pytest.fixture(scope="module")
def cache(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    assert build_cache(config(corpus), out) == (N_FILES, 0, 0)
    return out


def open_cache(path, cfg):
    c = TeacherCache(path)
    tcfg = dict(cfg["teacher"])
    c.check(tcfg, tcfg.get("n_units"))
    entries = read_manifest(cfg["data"]["train"])
    c.bind([e.path for e in entries], data_root(cfg["data"]["train"]))
    return c, entries


@pytest.mark.parametrize("name, ratio", [("hasrd", 1), ("hcodec", 2)])
def test_cached_crop_targets_equal_on_the_fly_targets(name, ratio, corpus, cache):
    """A crop's cached targets are the on-the-fly targets of that crop (float16 storage), at the codec rate."""
    from hasrd.codecs import build_codec

    cfg = config(corpus, name)
    codec = build_codec(cfg["model"])
    seg = 6400  # 0.4 s: a whole number of frames of both codecs
    crop = CropConfig(16000, seg, codec.hop_length, -20.0, 6.0, seed=3)
    cached, entries = open_cache(cache, cfg)
    teacher = build_teacher({"type": "mfcc"})
    teacher.set_kmeans(cached.kmeans())
    assert teacher.frame_rate / codec.frame_rate == ratio
    with_cache = CropDataset(entries, crop, teacher_cache=cached)
    fly = CropDataset(entries, crop, utterance_rate=teacher.sample_rate)
    keys = [(epoch, i) for epoch in range(3) for i in range(N_FILES)]
    a = collate_crops([with_cache[k] for k in keys])
    b = collate_crops([fly[k] for k in keys])
    assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["start"], b["start"])
    assert (a["start"] > 0).sum() >= 6 and (a["start"] % codec.hop_length == 0).all()  # real slices, frame-aligned
    ref = on_the_fly_targets(teacher, b["utterance"], b["start"].tolist(), seg, 16000, codec.hop_length)
    frames = seg // codec.hop_length
    assert a["features"].shape == ref["features"].shape == (len(keys), frames, 39)
    assert a["units"].shape == ref["units"].shape == (len(keys), frames)
    scale = float(ref["features"].abs().max())
    assert torch.allclose(a["features"], ref["features"], rtol=2e-3, atol=2e-3 * scale)
    assert torch.equal(a["units"], ref["units"])
    if ratio == 1:  # no conversion: exactly the float16 rounding of the on-the-fly value
        assert torch.equal(a["features"], ref["features"].half().float())


def test_targets_of_a_frame_do_not_depend_on_where_the_crop_starts(corpus):
    """The utterance-level definition: two overlapping crops agree on their shared frames."""
    teacher = build_teacher({"type": "mfcc"})
    entries = read_manifest(corpus)
    longest = max(entries, key=lambda e: sf.info(str(e.path)).frames)
    wav = torch.from_numpy(sf.read(str(longest.path), dtype="float32")[0]).unsqueeze(0)
    seg, hop = 6400, 320
    t = on_the_fly_targets(teacher, [wav, wav], [0, 5 * hop], seg, 16000, hop)["features"]
    assert torch.allclose(t[0, 5:], t[1, :-5], atol=1e-5)
    # computing on the crop alone (per-crop normalisation) would not agree
    crop_level = [teacher.features(wav[:, s : s + seg].reshape(1, 1, -1))[0] for s in (0, 5 * hop)]
    assert not torch.allclose(crop_level[0][5:], crop_level[1][:-5], atol=1e-2)


def test_cache_layout_index_and_units(corpus, cache):
    index = json.loads((cache / INDEX_NAME).read_text())
    assert index["teacher"]["type"] == "mfcc" and index["teacher"]["n_mfcc"] == 13
    assert (index["sample_rate"], index["frame_rate"], index["dim"], index["n_units"]) == (16000, 50.0, 39, 16)
    assert len(index["kmeans_sha256"]) == 16 and (cache / KMEANS_NAME).is_file()
    files = sorted(cache.glob("??/*.safetensors"))
    assert len(files) == N_FILES and not list(cache.rglob("*.tmp"))
    from safetensors.torch import load_file

    root = data_root(corpus)
    for e in read_manifest(corpus):
        rel, key = relative_key(e.path, root)
        data = load_file(str(file_for(cache, key)))
        n = int(np.ceil(sf.info(str(e.path)).frames / 320))
        assert data["features"].dtype == torch.float16 and data["features"].shape == (n, 39)
        assert data["units"].shape == (n,) and int(data["units"].max()) < 16


def test_duplicates_are_done_once_and_a_rerun_skips(corpus, tmp_path):
    manifest = tmp_path / "m.jsonl"
    paths = [str(p) for p in sorted(corpus.rglob("*.wav"))]
    manifest.write_text("".join(json.dumps({"path": p}) + "\n" for p in paths + paths[:2]))
    cfg = config(manifest)
    assert build_cache(cfg, tmp_path / "c") == (N_FILES, 0, 0)
    first = (tmp_path / "c" / KMEANS_NAME).read_bytes()
    victim = sorted((tmp_path / "c").glob("??/*.safetensors"))[0]
    victim.unlink()
    stale = victim.parent / f".{victim.name}.999.abcd.tmp"  # what a killed writer leaves
    stale.write_bytes(b"partial")
    assert build_cache(cfg, tmp_path / "c") == (1, N_FILES - 1, 0)  # only the missing file again
    assert victim.is_file() and not stale.exists()
    assert (tmp_path / "c" / KMEANS_NAME).read_bytes() == first  # units are not refitted


def test_command_line_output_defaults_to_teacher_cache(corpus, tmp_path, capsys):
    args = ["--config", str(TINY_CONFIGS["hasrd"]), f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200"]
    assert cache_main(args) == 2 and "no --output" in capsys.readouterr().err
    assert cache_main([*args, f"teacher.cache={tmp_path / 'c'}"]) == 0
    assert f"cached {N_FILES} file(s)" in capsys.readouterr().out
    assert len(list((tmp_path / "c").glob("??/*.safetensors"))) == N_FILES


def test_a_cache_of_another_teacher_is_refused(corpus, cache, tmp_path, capsys):
    # building into it with another teacher: one clear error, nothing written
    before = sorted(p.name for p in cache.rglob("*"))
    code = cache_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output", str(cache), f"data.train={corpus}",
                       "teacher.n_units=16", "teacher.n_mfcc=20"])
    err = capsys.readouterr().err
    assert code == 1 and "another teacher" in err and "n_mfcc" in err
    assert sorted(p.name for p in cache.rglob("*")) == before
    # opening it for training with another teacher, other units, or another k-means file
    with pytest.raises(TeacherCacheError, match="n_mels"):
        TeacherCache(cache).check({"type": "mfcc", "n_mels": 64}, 16)
    with pytest.raises(TeacherCacheError, match="another teacher"):
        TeacherCache(cache).check({"type": "hubert", "pretrained": "x"}, 16)
    with pytest.raises(TeacherCacheError, match="8"):
        TeacherCache(cache).check({"type": "mfcc"}, 8)
    from hasrd.teachers import KMeansUnits

    KMeansUnits(torch.randn(16, 39)).save(tmp_path / "km.safetensors")
    with pytest.raises(TeacherCacheError, match="k-means"):
        TeacherCache(cache).check({"type": "mfcc", "kmeans": str(tmp_path / "km.safetensors")})
    TeacherCache(cache).check({"type": "mfcc", "hop": 320, "deltas": True}, 16)  # defaults spelled out: same teacher
    with pytest.raises(TeacherCacheError, match="not a teacher cache"):
        TeacherCache(tmp_path)
    # a cache that lacks training files
    c = TeacherCache(cache)
    with pytest.raises(TeacherCacheError, match="lacks 1 of"):
        c.bind([corpus / "utt0.wav", tmp_path / "elsewhere.wav"], data_root(corpus))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    launcher = shutil.which("accelerate")
    cmd = [launcher] if launcher else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]
    return subprocess.run([*cmd, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
                           "--main_process_port", str(free_port()), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=600)


def counts(stdout: str) -> dict[str, list[int]]:
    """Per-rank summary lines ``[rank r/2] cached N file(s)[, skipped M already done]``."""
    found = re.findall(r"\[rank (\d)/2\] cached (\d+) file\(s\)(?:, skipped (\d+))?", stdout)
    assert sorted(r for r, _, _ in found) == ["0", "1"], stdout
    return {"cached": [int(c) for _, c, _ in found], "skipped": [int(s or 0) for _, _, s in found]}


def test_two_processes_share_the_build(corpus, cache, tmp_path):
    out = tmp_path / "c2"
    common = ["-m", "hasrd.teachers.cache", "--config", TINY_CONFIGS["hasrd"], "--output", out,
              f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200"]
    proc = launch(*common)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    c = counts(proc.stdout)
    assert sum(c["cached"]) == N_FILES and min(c["cached"]) > 0  # both ranks worked, each file once
    assert len(list(out.glob("??/*.safetensors"))) == N_FILES and not list(out.rglob("*.tmp"))
    # same files and contents as the one-process build (same units: k-means fitted the same way)
    from safetensors.torch import load_file

    for f in cache.glob("??/*.safetensors"):
        a, b = load_file(str(f)), load_file(str(out / f.relative_to(cache)))
        assert torch.equal(a["features"], b["features"]) and torch.equal(a["units"], b["units"])
    # a re-run skips everything
    proc = launch(*common)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    c = counts(proc.stdout)
    assert sum(c["cached"]) == 0 and sum(c["skipped"]) == N_FILES
