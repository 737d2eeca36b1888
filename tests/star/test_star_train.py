"""Speech-to-audio (STAR) training on the codec trainer's loop: both stages, exact resume, export,
generation and the fingerprint refusal."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hasrd.star import load_speak_to_audio
from hasrd.star.data import ClipItems, clip_latents, prompt_cache_path, read_events, read_prompts
from hasrd.star.encoders import SpeechEncoder
from hasrd.star.pipeline import StageOneError
from hasrd.star.train import contrastive_loss
from tests.conftest import TINY_HUBERT, assert_learns
from tests.star.conftest import (
    PROMPT_CLASSES,
    continuous_codec,
    metrics,
    prompt_wave,
    stage1_args,
    stage2_args,
    train_star,
)


def losses(run) -> dict[int, float]:
    return {r["step"]: r["loss/total"] for r in metrics(run) if "loss/total" in r}


def test_stage1_checkpoints_validates_and_exports(stage1, prompts, speech_codec_dir):
    assert sorted(p.name for p in stage1.glob("ckpt-*")) == ["ckpt-00000002", "ckpt-00000004"]
    val = next(r for r in metrics(stage1) if "val/cos" in r)
    assert -1 <= val["val/cos"] <= 1 and 0 <= val["val/retrieval"] <= 1
    assert set(losses(stage1)) == {1, 2, 3, 4}
    meta = json.loads((stage1 / "export" / "star.json").read_text())
    assert meta["stage"] == 1 and meta["semantic_dim"] == 32 and meta["codec"] is None
    assert meta["speech_encoder"] == {"type": "codec", "codec": str(speech_codec_dir.resolve())}
    assert "bell" in meta["classes"] and "a bell ringing" in meta["classes"]["bell"]
    model = load_speak_to_audio(stage1 / "export")
    assert meta["speech_encoder_fingerprint"] == model.encoder.fingerprint()
    assert prompt_cache_path(prompts, model.encoder).is_file()  # features cached next to the manifest
    v = model.embed_prompt(prompt_wave("bell", 0), 16000)
    assert v.shape == (32,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
    assert model.classify_prompt(prompt_wave("bell", 0), 16000) in meta["classes"]


def test_stage1_resume_is_exact(speech_codec_dir, events, prompts, tmp_path):
    args = stage1_args(speech_codec_dir, events, prompts)
    assert train_star(tmp_path / "a", *args) == 0
    assert train_star(tmp_path / "b", *args, "train.max_steps=2") == 0
    assert train_star(tmp_path / "b", *args, "--resume") == 0
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert a[3] == b[3] and a[4] == b[4]
    wa = load_speak_to_audio(tmp_path / "a" / "export").network.state_dict()
    wb = load_speak_to_audio(tmp_path / "b" / "export").network.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_bridge_overfits_two_classes(speech_codec_dir, events, prompts, tmp_path):
    assert train_star(tmp_path, *stage1_args(speech_codec_dir, events, prompts), f"data.val_prompts={prompts}",
                      "train.max_steps=60", "train.val_every=60", "train.ckpt_every=100", "train.batch_size=6") == 0
    val = [r for r in metrics(tmp_path) if "val/retrieval" in r][-1]
    assert val["val/retrieval"] == 1.0 and val["val/cos"] > 0.5, val
    model = load_speak_to_audio(tmp_path / "export")
    for r in read_prompts(prompts):
        from hasrd.io.audio import load_audio

        x, sr = load_audio(r["path"])
        assert model.classify_prompt(x[0], sr) == r["class"]


def test_contrastive_loss_takes_same_class_items_as_positives():
    text = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    cls = torch.tensor([0, 0, 1, 1])
    # a prediction equal to the other item of its class is as good as one equal to its own text
    own, _ = contrastive_loss(text, text, cls, 0.07)
    swapped, _ = contrastive_loss(text[[1, 0, 3, 2]], text, cls, 0.07)
    other, _ = contrastive_loss(text[[2, 3, 0, 1]], text, cls, 0.07)
    assert float(swapped) == pytest.approx(float(own), abs=1e-5) and float(other) > float(own) + 1


def test_stage2_learns_exports_and_generates(stage2, stage1, latent_codec_dir):
    loss = losses(stage2)
    assert sorted(loss) == list(range(1, 81))
    assert_learns([loss[s] for s in range(1, 81)], 0.8)
    assert any("val/flow_loss" in r for r in metrics(stage2))
    meta = json.loads((stage2 / "export" / "star.json").read_text())
    assert meta["stage"] == 2 and meta["codec"] == str(latent_codec_dir.resolve()) and meta["crop_frames"] == 20
    model = load_speak_to_audio(stage2 / "export")
    assert not torch.equal(model.network.z_std, torch.ones_like(model.network.z_std))  # statistics exported
    b1 = load_speak_to_audio(stage1 / "export").network.bridge.state_dict()
    assert all(torch.equal(v, model.network.bridge.state_dict()[k]) for k, v in b1.items())  # bridge kept frozen
    p = prompt_wave("bell", 1)
    y, sr = model.generate(p, 16000, seconds=0.5, steps=4, seed=0)
    assert sr == model.codec.sample_rate == 16000 and y.shape == (8000,) and np.isfinite(y).all()
    y2, _ = model.generate(p, 16000, seconds=0.5, steps=4, seed=0)
    y3, _ = model.generate(p, 16000, seconds=0.5, steps=4, seed=1)
    assert np.array_equal(y, y2) and not np.allclose(y, y3)
    yg, _ = model.generate(p, 16000, seconds=0.5, steps=4, seed=0, guidance=1.0)
    assert not np.allclose(y, yg)  # guidance changes the field
    yt, _ = model.generate_from_text("a bell ringing", seconds=0.3, steps=2)
    assert yt.shape == (4800,) and np.isfinite(yt).all()
    y44, _ = model.generate(np.repeat(p, 2)[None], 32000, seconds=0.5, steps=2)  # any input rate
    assert y44.shape == (8000,)
    with pytest.raises(ValueError, match="seconds"):
        model.generate(p, 16000, seconds=31)


def test_stage2_conditions_mix_bridge_and_text(stage2, events, prompts, latent_codec_dir):
    from hasrd.codecs import load_codec
    from hasrd.star.data import class_descriptions, latent_stats

    rows = read_events(events / "manifest_train.jsonl")
    cache = clip_latents(events / "manifest_train.jsonl", load_codec(str(latent_codec_dir)), progress=False)
    mean, std = latent_stats(cache)
    vec = {c: torch.nn.functional.normalize(torch.randn(3, 32), dim=-1) for c in PROMPT_CLASSES}
    data = ClipItems(cache, rows, class_descriptions(rows), 32, mean, std, 20, 0, vec, bridge_prob=1.0)
    items = [data[(0, i)] for i in range(len(data))]
    for r, item in zip(rows, items):
        assert item["bridge"] == (r["class"] in PROMPT_CLASSES)  # bridge vectors where the class has prompts
        if item["bridge"]:
            assert any(torch.equal(item["c"], v) for v in vec[r["class"]])
        assert item["x1"].shape == (8, min(20, item["x1"].shape[1])) and not item["drop"]
    assert data[(0, 3)]["x0"].equal(items[3]["x0"]) and not data[(1, 3)]["x0"].equal(items[3]["x0"])


def test_a_stage1_export_embeds_but_refuses_generate(stage1):
    model = load_speak_to_audio(stage1 / "export")
    with pytest.raises(StageOneError, match="stage-1") as e:
        model.generate(prompt_wave("bell", 0), 16000)
    assert "\n" not in str(e.value)


def test_a_codec_or_encoder_with_another_fingerprint_is_refused(stage2, tmp_path):
    other = continuous_codec(tmp_path / "other", seed=123)
    for key, value in (("codec", str(other)), ("speech_encoder", {"type": "codec", "codec": str(other)})):
        d = tmp_path / key
        shutil.copytree(stage2 / "export", d)
        meta = json.loads((d / "star.json").read_text())
        (d / "star.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(ValueError) as e:
            load_speak_to_audio(d)
        assert "\n" not in str(e.value) and ("fingerprint" in str(e.value) or "continuous" in str(e.value))


def test_stage_errors_are_one_line(speech_codec_dir, latent_codec_dir, events, prompts, stage1, tmp_path, capsys):
    capsys.readouterr()
    s2 = stage2_args(latent_codec_dir, events, prompts, stage1)
    for bad, words in ((["star.stage=2", f"data.events={events / 'manifest_train.jsonl'}"], "init_from"),
                       ([f"data.events={events / 'manifest_train.jsonl'}"], "data.prompts"),
                       ([*s2, f"star.codec={speech_codec_dir}"], "continuous"),
                       ([*s2, f"train.init_from={tmp_path}"], "not a STAR export"),
                       ([*stage1_args(speech_codec_dir, events, prompts), "star.stage=3"], "star.stage")):
        assert train_star(tmp_path / "bad", *bad) != 0
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train.py")]
        assert len(err) == 1 and words in err[0], err


def test_an_ssl_speech_encoder_trains_the_bridge(events, prompts, tmp_path):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    HubertModel(HubertConfig(**TINY_HUBERT)).eval().save_pretrained(tmp_path / "hubert")
    enc = SpeechEncoder({"type": "ssl", "path": str(tmp_path / "hubert"), "layer": 1})
    x = torch.from_numpy(prompt_wave("bell", 0)).view(1, 1, -1)
    f = enc.features(x)
    assert f.shape[1] == enc.dim == 32 and abs(f.shape[0] - x.shape[-1] / 320) <= 1.5  # 50 Hz
    assert len(enc.fingerprint()) == 16
    args = ["star.speech_encoder.type=ssl", f"star.speech_encoder.path={tmp_path / 'hubert'}",
            "star.speech_encoder.layer=1", f"data.events={events / 'manifest_train.jsonl'}", f"data.prompts={prompts}",
            "train.max_steps=2"]
    assert train_star(tmp_path / "run", *args) == 0
    model = load_speak_to_audio(tmp_path / "run" / "export")
    assert model.encoder.spec["type"] == "ssl" and model.encoder.fingerprint() == enc.fingerprint()
    assert prompt_cache_path(prompts, enc).is_file()
    assert model.embed_prompt(prompt_wave("rain", 0), 16000).shape == (32,)
