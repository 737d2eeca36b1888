"""Training the token LM on the codec trainer's loop: features, checkpoints, exact resume, export."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from hasrd.lm import LAYOUT, CodecLM, load_codec_lm
from hasrd.lm.data import (
    ExampleCrops,
    LMFeatures,
    cache_path,
    collate_examples,
    content_dims,
    dtw_path,
    examples_of,
    load_or_compute,
    read_rows,
)
from tests.conftest import ROOT, assert_learns, speechlike, tiny_codec
from tests.lm.conftest import train_lm, voice


def losses(run):
    return {r["step"]: r["loss/total"] for r in map(json.loads, open(run / "metrics.jsonl")) if "loss/total" in r}


def test_a_run_checkpoints_validates_and_exports(lm_run, lm_data, lm_codec_dir):
    assert sorted(p.name for p in lm_run.glob("ckpt-*")) == ["ckpt-00000002", "ckpt-00000004"]
    rows = [json.loads(line) for line in open(lm_run / "metrics.jsonl")]
    val = next(r for r in rows if "val/loss" in r)
    assert {f"val/loss_{t}" for t in ("se", "tse", "ss1", "ss2", "vc", "lass")} <= set(val)
    assert set(losses(lm_run)) == {1, 2, 3, 4}
    lm = load_codec_lm(lm_run / "export")
    assert isinstance(lm, CodecLM) and lm.tasks == ["se", "tse", "ss", "vc", "lass"]
    assert lm.network.lm.tasks == ["se", "tse", "ss1", "ss2", "vc", "lass"]
    meta = json.loads((lm_run / "export" / "lm.json").read_text())
    assert meta["codec"] == str(lm_codec_dir.resolve()) and meta["codec_fingerprint"] == lm.codec.fingerprint()
    assert meta["codec_name"] == "hasrd" and meta["settings"]["n_q"] == 3 == lm.network.lm.K
    assert lm.network.lm.ref_dim == 16 and lm.network.lm.text_dim == 16
    assert cache_path(lm_data / "manifest.jsonl", lm.codec).is_file()  # features cached next to the manifest
    assert not torch.equal(lm.network.z_std, torch.ones_like(lm.network.z_std))  # statistics exported
    y = lm.generate("ss", torch.randn(1, 1, 3200) * 0.1, seed=0)
    assert len(y) == 2 and all(t.shape == (1, 1, 3200) and torch.isfinite(t).all() for t in y)
    # the figures that say whether the input is used, each a share of tokens
    for k in (1, 2, 3):
        for name in ("acc", "acc_shuf", "acc_copy", "acc_prev"):
            assert 0.0 <= val[f"val/{name}_q{k}"] <= 1.0, name
    assert meta["network"]["layout"] == meta["settings"]["layout"] == LAYOUT


def test_an_export_of_the_prefix_layout_is_refused(lm_run, tmp_path):
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "model.safetensors").write_bytes((lm_run / "export" / "model.safetensors").read_bytes())
    meta = json.loads((lm_run / "export" / "lm.json").read_text())
    meta["network"].pop("layout")
    (tmp_path / "lm" / "lm.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="retrain") as e:
        load_codec_lm(tmp_path / "lm")
    assert "\n" not in str(e.value)


def test_batches_mix_tasks_with_one_layout(lm_data, lm_codec_dir):
    from hasrd.codecs import CodecView, load_codec

    view = CodecView(load_codec(str(lm_codec_dir)))
    feats = load_or_compute(lm_data / "manifest.jsonl", view, progress=False)
    tasks = ["se", "tse", "ss1", "ss2", "vc", "lass"]
    data = ExampleCrops(feats, examples_of(read_rows(lm_data / "manifest.jsonl")), tasks, 3, 20, 10, 16, seed=0)
    assert len(data) == 12  # 10 rows, the two ss rows give two examples each
    items = [data[(0, i)] for i in range(len(data))]
    assert data[(0, 3)]["cond"].equal(items[3]["cond"]) and not all(
        data[(1, i)]["cond"].equal(items[i]["cond"]) for i in range(len(data)))  # crops: per epoch, repeatable
    b = collate_examples(items, ref_dim=16, text_dim=16)
    assert b["cond"].shape[:2] == b["cond_mask"].shape and b["ref"].shape[:2] == b["ref_mask"].shape
    no_ref = [i for i, e in enumerate(data.examples) if e.task not in ("tse", "vc")]
    assert not b["ref_mask"][no_ref].any() and b["ref_mask"][[i for i in range(12) if i not in no_ref]].any(1).all()
    assert (b["text"].norm(dim=1) > 0).tolist() == [e.task == "lass" for e in data.examples]
    assert b["targets"].shape[:2] == (12, 3) and int(b["target_lengths"].max()) == b["targets"].shape[2]
    assert all(i["cond"].shape[0] == i["codes"].shape[1] <= 20 for i in items)  # every task, vc included


def test_resume_continues_exactly(lm_codec_dir, lm_data, tmp_path):
    assert train_lm(tmp_path / "a", lm_codec_dir, lm_data) == 0
    assert train_lm(tmp_path / "b", lm_codec_dir, lm_data, "train.max_steps=2") == 0
    assert train_lm(tmp_path / "b", lm_codec_dir, lm_data, "--resume") == 0
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert a[3] == b[3] and a[4] == b[4]
    wa = load_codec_lm(tmp_path / "a" / "export").network.state_dict()
    wb = load_codec_lm(tmp_path / "b" / "export").network.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_loss_falls(lm_codec_dir, lm_data, tmp_path):
    """40 steps on the 12 tiny examples: the teacher-forced loss falls well below its start (ln 64)."""
    assert train_lm(tmp_path, lm_codec_dir, lm_data, "train.max_steps=40", "train.ckpt_every=100") == 0
    loss = losses(tmp_path)
    assert sorted(loss) == list(range(1, 41))
    assert_learns([loss[s] for s in range(1, 41)], 0.6)


def test_task_subset_and_config_errors_are_one_line(lm_codec_dir, lm_data, tmp_path, capsys):
    assert train_lm(tmp_path / "se", lm_codec_dir, lm_data, "lm.tasks=[se,lass]", "train.max_steps=1") == 0
    lm = load_codec_lm(tmp_path / "se" / "export")
    assert lm.tasks == ["se", "lass"] and lm.network.lm.ref_dim == 0 and lm.network.lm.text_dim == 16
    capsys.readouterr()
    for bad, words in ((["lm.n_q=9"], "lm.n_q"), (["lm.tasks=[tts]"], "tts"), (["model.sample_rate=24000"], "sample_rate"),
                       (["lm.codec=nowhere/at/all"], "lm.codec"), (["model.cond_layer=1"], "model.cond_layers")):
        assert train_lm(tmp_path / "bad", lm_codec_dir, lm_data, *bad) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_export_refuses_a_codec_with_another_fingerprint(lm_run, tmp_path):
    from hasrd.codecs import build_codec
    from tests.conftest import tiny_config

    torch.manual_seed(123)
    build_codec(tiny_config("hasrd")["model"]).save_pretrained(tmp_path / "other")
    (tmp_path / "lm").mkdir()
    for name in ("lm.json", "model.safetensors"):
        (tmp_path / "lm" / name).write_bytes((lm_run / "export" / name).read_bytes())
    meta = json.loads((tmp_path / "lm" / "lm.json").read_text())
    (tmp_path / "lm" / "lm.json").write_text(json.dumps({**meta, "codec": str(tmp_path / "other")}))
    with pytest.raises(ValueError, match="fingerprint") as e:
        load_codec_lm(tmp_path / "lm")
    assert "\n" not in str(e.value)


def test_a_continuous_codec_is_refused_and_a_dual_stream_one_trains(lm_data, tmp_path, capsys):
    from hasrd.codecs import build_codec
    from hasrd.config import load_config

    torch.manual_seed(0)
    build_codec(load_config(ROOT / "codec_configs" / "debug" / "continuous_tiny.yaml")["model"]).save_pretrained(tmp_path / "cont")
    capsys.readouterr()
    assert train_lm(tmp_path / "bad", tmp_path / "cont", lm_data, "train.max_steps=1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lm.codec" in err[0] and "continuous" in err[0], err

    tiny_codec("hcodec").save_pretrained(tmp_path / "hcodec")
    assert train_lm(tmp_path / "run", tmp_path / "hcodec", lm_data, "train.max_steps=2", "lm.n_q=3") == 0
    lm = load_codec_lm(tmp_path / "run" / "export")
    view_dim = lm.codec.config["semantic_dim"] + lm.codec.config["acoustic_dim"]
    assert lm.network.lm.cond_dim == view_dim and lm.network.lm.K == 3
    out = lm.generate("se", speechlike(0.5), greedy=True)
    frames = -(-8000 // lm.codec.hop_length)
    assert len(out) == 1 and out[0].shape == (1, 1, frames * lm.codec.hop_length)


def test_long_inputs_are_generated_in_windows_of_the_training_crop(lm_run):
    """The export stores the crop length (20 frames) as chunk_frames; a 50-frame input is generated
    as windows of 20, 20 and 10 frames, each exactly what the LM generates on that window alone."""
    lm = load_codec_lm(lm_run / "export")
    assert lm.settings["chunk_frames"] == 20
    hop = lm.codec.hop_length
    wav = speechlike(50 * hop / 16000)
    codes = lm.generate_codes("se", wav, greedy=True)[0]
    assert codes.shape == (1, 3, 50)
    from hasrd.enhance.features import level_gain

    cond = lm.view.analyse(wav * level_gain(wav))[0].transpose(1, 2)
    ref = {"ref": cond.new_zeros(1, 1, lm.network.lm.ref_dim), "ref_mask": torch.zeros(1, 1, dtype=torch.bool),
           "text": torch.zeros(1, lm.network.lm.text_dim)}
    for start, n in ((0, 20), (20, 20), (40, 10)):
        alone = lm.network.generate(["se"], cond[:, start:start + n], n, greedy=True, **ref)
        assert torch.equal(codes[..., start:start + n], alone)
    whole = lm.generate_codes("se", wav, greedy=True, chunk_frames=50)[0]
    assert whole.shape == codes.shape and not torch.equal(whole, codes)
    y = lm.generate("se", wav, greedy=True)[0]
    assert y.shape == (1, 1, 50 * hop) and torch.allclose(y, lm.codec.decode(codes) / level_gain(wav), atol=1e-5)


def _vals(run):
    return [(r["step"], r["val/loss"]) for r in map(json.loads, open(run / "metrics.jsonl")) if "val/loss" in r]


def test_the_best_validation_is_exported_and_patience_stops_the_run(lm_codec_dir, lm_data, tmp_path):
    """best_mode max on a falling loss: the first validation stays the best, so patience 2 stops
    the run two validations later; RUN/best holds the weights of that first validation."""
    val = f"data.val={lm_data / 'manifest.jsonl'}"
    common = (val, "train.val_every=2", "train.ckpt_every=100", "train.best_metric=val/loss", "train.max_steps=40")
    assert train_lm(tmp_path / "a", lm_codec_dir, lm_data, *common, "train.best_mode=max", "train.patience=2") == 0
    vals = _vals(tmp_path / "a")
    best, since, stop = None, 0, None
    for step, v in vals:  # where patience 2 must have stopped it, from the logged figures
        if best is None or v > best[1]:
            best, since = (step, v), 0
        else:
            since += 1
        if since == 2:
            stop = step
            break
    assert stop is not None and vals[-1][0] == stop < 40  # stopped early, at the right validation
    meta = json.loads((tmp_path / "a" / "best" / "best.json").read_text())
    assert meta["step"] == best[0] and meta["value"] == pytest.approx(best[1]) and meta["mode"] == "max"
    assert load_codec_lm(tmp_path / "a" / "best").tasks == load_codec_lm(tmp_path / "a" / "export").tasks
    wb = load_codec_lm(tmp_path / "a" / "best").network.state_dict()
    we = load_codec_lm(tmp_path / "a" / "export").network.state_dict()
    assert not all(torch.equal(wb[k], we[k]) for k in wb)  # best is the early weights, export the last

    # min mode, interrupted and resumed: the same best as one uninterrupted run
    run = ("train.best_mode=min", "train.max_steps=8", "train.ckpt_every=4")
    assert train_lm(tmp_path / "b", lm_codec_dir, lm_data, *common, *run) == 0
    assert train_lm(tmp_path / "c", lm_codec_dir, lm_data, *common, *run[:2], "train.max_steps=4", "train.ckpt_every=4") == 0
    assert train_lm(tmp_path / "c", lm_codec_dir, lm_data, *common, *run, "--resume") == 0
    b, c = (json.loads((tmp_path / x / "best" / "best.json").read_text()) for x in "bc")
    assert b == c and b["step"] == min(_vals(tmp_path / "b"), key=lambda sv: sv[1])[0]


def test_a_best_metric_without_validation_figures_is_one_line(lm_codec_dir, lm_data, tmp_path, capsys):
    capsys.readouterr()
    val = f"data.val={lm_data / 'manifest.jsonl'}"
    for bad, words in ((["train.val_every=1", "train.best_metric=val/loss"], "data.val"),
                       ([val, "train.best_metric=val/loss"], "val_every"),
                       ([val, "train.val_every=1", "train.best_metric=val/pesq"], "val/loss_se"),
                       ([val, "train.val_every=1", "train.best_metric=val/loss", "train.best_mode=up"], "min or max"),
                       (["train.patience=3"], "best_metric")):
        assert train_lm(tmp_path / "bad", lm_codec_dir, lm_data, *bad) == 1
        err = [line for line in re.split(r"[\r\n]", capsys.readouterr().err)  # less the progress bar
               if line.strip() and not line.startswith("train:")]
        assert len(err) == 1 and words in err[0], err
        assert not (tmp_path / "bad" / "best").exists()


def test_the_speed_benchmark_compares_cache_and_layouts(lm_run, tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("lm_speed", ROOT / "benchmarks" / "lm_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "speed.json"
    assert bench.main(["--lm", str(lm_run / "export"), "--seconds", "1", "--frames", "10", "--repeats", "1",
                       "--threads", "1", "--json", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert fig["cached_equals_uncached"] is True and fig["n_q"] == 3
    assert fig["steps"] == 12 and fig["flattened_steps"] == 30  # F + K - 1 against K * F
    assert all(fig[k] > 0 for k in ("cached_seconds", "uncached_seconds", "flattened_seconds", "se_rtf"))


@pytest.mark.parametrize("kind", ["repeat-and-drop", "4x-slower", "3x-faster"])
def test_dtw_path_recovers_a_known_warp(kind):
    """``b`` is ``a`` with frames repeated and dropped (``b = a[warp]``, plus noise): for every
    frame of ``a`` that ``b`` keeps, the path lands on one of its copies; monotone, 0 -> M-1."""
    rng = np.random.default_rng(0)
    N = 61
    a = rng.standard_normal((N, 32))
    if kind == "repeat-and-drop":
        reps = rng.choice([0, 1, 2, 3], N, p=[0.2, 0.4, 0.3, 0.1])
        reps[0] = reps[-1] = 1
    else:
        reps = np.full(N, 4) if kind == "4x-slower" else (np.arange(N) % 3 == 0).astype(int)
    warp = np.repeat(np.arange(N), reps)  # b's frame -> a's frame
    b = a[warp] + 0.05 * rng.standard_normal((warp.size, 32))
    path = dtw_path(a, b)
    assert path.dtype == np.int64 and path.shape == (N,)
    assert path[0] == 0 and path[-1] == warp.size - 1 and (np.diff(path) >= 0).all()
    kept = reps > 0
    assert np.array_equal(warp[path[kept]], np.arange(N)[kept])
    assert dtw_path(a[:1], b).tolist() == [0] and dtw_path(a, b[:1]).tolist() == [0] * N


def test_vc_examples_are_source_length_and_cropped_together(tmp_path):
    """A vc target of another length and level is coded at its own level gain, aligned to the
    source by DTW on the latent and stored with the source's frame count; the crop takes one
    window of both. Unequal frames are refused in one line naming the row."""
    from hasrd.codecs import CodecView
    from hasrd.enhance.features import level_gain

    codec = tiny_codec("hasrd")
    view = CodecView(codec)
    assert content_dims(codec) == slice(None) and content_dims(tiny_codec("hcodec")) == slice(0, 16)
    src, tgt, ref = voice(110.0, 0, 1.0), 0.05 * voice(240.0, 0, 1.4, seed=1), voice(240.0, 1, 0.8)
    for name, x in (("src", src), ("tgt", tgt), ("ref", ref)):
        sf.write(tmp_path / f"{name}.wav", x, 16000)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"task": "vc", "input": "src.wav", "target": "tgt.wav", "ref": "ref.wav"}) + "\n")
    feats = load_or_compute(manifest, view, progress=False)
    assert cache_path(manifest, codec).name.startswith("lm-features-v2-") and cache_path(manifest, codec).is_file()
    (ca, cb), (ta, tb) = feats.span("cond", 0), feats.span("code", 0)
    assert cb - ca == tb - ta == 50  # the source's frames (1.0 s at 50 Hz), not the target's 70

    def analyse(x, gain_of):
        w = torch.from_numpy(x).view(1, 1, -1)
        return view.analyse(w * level_gain(torch.from_numpy(gain_of).view(1, 1, -1)))

    zs, _ = analyse(src, src)
    zt, own = analyse(tgt, tgt)
    path = torch.from_numpy(dtw_path(zs[0].T.numpy(), zt[0].T.numpy()))
    assert own.shape[-1] == 70 and path[-1] == 69
    assert torch.equal(feats.codes[ta:tb].long(), own[0][:, path].T)
    _, at_source_gain = analyse(tgt, src)
    assert not torch.equal(own[0][:, path], at_source_gain[0][:, path])  # the gain is tested

    data = ExampleCrops(feats, examples_of(read_rows(manifest)), ["vc"], 3, 20, 10, 0, seed=0)
    starts = set()
    for epoch in range(6):
        item = data[(epoch, 0)]
        assert item["cond"].shape[0] == item["codes"].shape[1] == 20
        s = next(s for s in range(31) if torch.equal(item["cond"], feats.cond[ca + s:ca + s + 20].float()))
        assert torch.equal(item["codes"], feats.codes[ta + s:ta + s + 20, :3].long().T)
        starts.add(s)
    assert len(starts) > 1

    bad = LMFeatures(feats.cond[ca:ca + 10], torch.tensor([0, 10]), feats.ref, feats.ref_off,
                     feats.codes[:8], torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="row 1") as e:
        ExampleCrops(bad, examples_of(read_rows(manifest)), ["vc"], 3, 20, 10, 0, seed=0)
    assert "\n" not in str(e.value) and "10" in str(e.value) and "8" in str(e.value)
