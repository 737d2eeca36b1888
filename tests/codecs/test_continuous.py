"""The continuous compact-latent codec: interface, persistence, the .hsrl format, and both training stages."""
import json
import math
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch

from hasrd.codecs import ContinuousCodec, build_codec, load_codec
from hasrd.config import load_config
from hasrd.io.latentfile import (
    LatentFileError,
    file_kind,
    latent_from_bytes,
    latent_meta,
    latent_to_bytes,
    load_latent,
    save_latent,
)
from tests.conftest import ROOT, assert_learns, speechlike

TINY = ROOT / "codec_configs" / "debug" / "continuous_tiny.yaml"


def tiny_cfg(**over) -> dict:
    return {**load_config(TINY)["model"], **over}


def tiny(stage: int = 1, seed: int = 0) -> ContinuousCodec:
    torch.manual_seed(seed)
    return build_codec(tiny_cfg(stage=stage)).eval()


# ---------------------------------------------------------------------------------------------
# interface


def test_interface_and_frame_counts():
    c = tiny()
    cfg = tiny_cfg()
    assert c.continuous and c.codec_name == "continuous"
    assert c.frame_rate == 50.0 and c.hop_length == 320
    # the latent is the compact one: fewer channels than the encoder features and the teacher
    assert c.latent_dim == cfg["latent_dim"] == 8 < cfg["feature_dim"] and c.latent_dim < cfg["semantic_head"]["dim"]
    for seconds in (0.53, 0.2):
        x = speechlike(seconds)
        z = c.encode_to_latent(x)
        assert z.dtype == torch.float32
        assert z.shape == (1, c.latent_dim, math.ceil(x.shape[-1] / c.hop_length))
        assert z.abs().max() < 1  # tanh-bounded
        y = c.decode_latent(z)
        assert y.shape == (1, 1, z.shape[-1] * c.hop_length)
    assert c.latent_bitrate(16) == 50 * 8 * 16 and c.latent_bitrate(8) == 50 * 8 * 8
    d = c.describe()  # one record layout for every codec: no codebooks, no token bitrates
    assert d["latent_bitrate_float16"] == 6400 and d["continuous"] and d["latent_dim"] == 8
    assert d["num_codebooks"] == 0 and d["codebook_sizes"] == [] and d["num_semantic_codebooks"] == 0 and d["bitrates"] == {}


def test_it_is_not_a_token_codec_so_the_token_members_are_absent():
    from hasrd.codecs import Codec, TokenCodec

    c = tiny()
    assert isinstance(c, Codec) and not isinstance(c, TokenCodec)
    for name in ("encode", "decode", "bitrate", "n_q_for_bitrate", "check_n_q", "latent_to_codes", "codes_to_latent",
                 "quantize_latent", "stream_encoder", "stream_decoder"):
        assert not hasattr(c, name), name
    # the codebook facts are true: it has none
    assert c.num_codebooks == 0 and c.codebook_sizes == [] and c.num_semantic_codebooks == 0
    with pytest.raises(ValueError, match="latent"):
        c.decode_latent(torch.zeros(1, c.latent_dim + 1, 5))
    with pytest.raises(TypeError, match="float"):
        c.decode_latent(torch.zeros(1, c.latent_dim, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_q"):
        c.encode_to_latent(speechlike(0.1), quantize=True, n_q=1)


def test_eval_forward_equals_decode_of_encode_and_stage1_training_forward():
    c = tiny()
    x = speechlike(0.45)
    with torch.no_grad():
        out = c(x)
    assert torch.allclose(out.audio, c.decode_latent(c.encode_to_latent(x))[..., : x.shape[-1]], atol=1e-6)
    assert torch.equal(out.latent, c.encode_to_latent(x))
    c.train()
    out = c(x.repeat(2, 1, 1))
    frames = math.ceil(x.shape[-1] / 320)
    assert out.audio is None  # stage 1 decodes nothing while training
    assert out.codes.shape == (2, 0, frames) and out.latent.shape == (2, 8, frames)
    assert out.semantic["features"].shape == (2, frames, 39)
    assert "anchor_features" not in out.semantic and out.losses == {}


@pytest.mark.parametrize("stage", [1, 2])
def test_save_and_load_give_identical_outputs(stage, tmp_path):
    c = tiny(stage)
    x = speechlike(0.3)
    c.save_pretrained(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())
    assert stored["codec"] == "continuous" and stored["model"]["stage"] == stage
    loaded = load_codec(tmp_path / "m")
    assert type(loaded) is ContinuousCodec and loaded.fingerprint() == c.fingerprint()
    z = c.encode_to_latent(x)
    assert torch.equal(loaded.encode_to_latent(x), z)
    assert torch.equal(loaded.decode_latent(z), c.decode_latent(z))
    assert any(k.startswith("anchor_") for k in loaded.state_dict()) == (stage == 2)


def test_stage_parts_and_gradients():
    s1 = tiny(1).train()
    assert not any(p.requires_grad for p in s1.decoder.parameters())
    out = s1(speechlike(0.3).repeat(2, 1, 1))
    out.semantic["features"].pow(2).mean().backward()
    assert s1.bottleneck.net[0].weight.grad is not None
    assert any(p.grad is not None for p in s1.encoder.parameters())

    s2 = tiny(2).train()
    assert all(p.requires_grad for p in s2.decoder.parameters())
    anchors = [s2.anchor_head, s2.anchor_encoder, s2.anchor_bottleneck]
    assert all(a is not None and not a.training for a in anchors)
    assert not any(p.requires_grad for a in anchors for p in a.parameters())
    out = s2(speechlike(0.3).repeat(2, 1, 1))
    assert torch.isfinite(out.losses["anchor_l2"]) and out.losses["anchor_l2"] == 0  # a fresh model is its own anchor
    (out.audio.abs().mean() + out.semantic["anchor_features"].pow(2).mean()).backward()
    assert s2.bottleneck.net[0].weight.grad is not None  # the anchor pulls on the live latent
    assert all(p.grad is None for a in anchors for p in a.parameters())

    # a frozen encoder needs no copy; freezing is by part name
    s2f = build_codec(tiny_cfg(stage=2, freeze=["encoder"]))
    assert s2f.anchor_encoder is None and s2f.anchor_bottleneck is not None
    assert not any(p.requires_grad for p in s2f.encoder.parameters())


def test_prepare_training_snapshots_the_stage1_weights():
    s2 = tiny(2)
    with pytest.raises(ValueError, match="init_from"):
        s2.prepare_training(None)
    with torch.no_grad():  # the warm start loaded other (stage-1) weights into the live parts
        for p in list(s2.semantic_head.parameters()) + list(s2.bottleneck.parameters()) + list(s2.encoder.parameters()):
            p.add_(0.5)
    keys = {k for k in s2.state_dict() if not k.startswith("anchor_")}
    assert "frozen copy" in s2.prepare_training(keys)
    for frozen, live in ((s2.anchor_head, s2.semantic_head), (s2.anchor_bottleneck, s2.bottleneck), (s2.anchor_encoder, s2.encoder)):
        a, b = frozen.state_dict(), live.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # warm weights that carry an anchor (a stage-2 export) keep it
    before = {k: v.clone() for k, v in s2.anchor_head.state_dict().items()}
    with torch.no_grad():
        next(s2.semantic_head.parameters()).add_(1.0)
    assert "loaded" in s2.prepare_training(set(s2.state_dict()))
    assert all(torch.equal(before[k], v) for k, v in s2.anchor_head.state_dict().items())
    assert tiny(1).prepare_training(None) is None


@pytest.mark.parametrize("over, match", [
    ({"stage": 3}, "stage"), ({"freeze": ["vocoder"]}, "freeze"), ({"semantic_head": {"dim": 39, "n_units": 8}}, "n_units"),
    ({"bottleneck": {"hidden": 8, "kernel": 4}}, "odd"), ({"decoder": {"channels": 32, "rates": [8, 4, 4, 2]}}, "hop"),
])
def test_bad_configs_are_refused(over, match):
    with pytest.raises(ValueError, match=match):
        build_codec(tiny_cfg(**over))


# ---------------------------------------------------------------------------------------------
# the .hsrl file


def _meta(c, length=16000, sr=16000):
    return latent_meta(c, length=length, orig_sample_rate=sr, channels=1, chunk_frames=1500)


def test_latent_file_round_trip_and_safetensors_interop(tmp_path):
    from safetensors.numpy import load_file

    c = tiny()
    z = c.encode_to_latent(speechlike(1.0))[0]
    path = tmp_path / "x.hsrl"
    size = save_latent(path, z, _meta(c))
    assert path.stat().st_size == size and not list(tmp_path.glob(".*tmp"))
    lat, meta = load_latent(path)
    assert lat.dtype == np.float16 and lat.shape == (8, 50)
    np.testing.assert_array_equal(lat, z.numpy().astype(np.float16))
    assert meta["codec"] == "continuous" and meta["fingerprint"] == c.fingerprint()
    assert (meta["sample_rate"], meta["frame_rate"], meta["num_frames"], meta["length"], meta["latent_dim"]) == (16000, 50.0, 50, 16000, 8)
    # a plain safetensors file: any safetensors reader gets the float16 latent
    assert load_file(str(path))["latent"].dtype == np.float16
    assert file_kind(path) == "latent"
    (tmp_path / "renamed.hsrd").write_bytes(path.read_bytes())
    assert file_kind(tmp_path / "renamed.hsrd") == "latent"  # content decides before the suffix
    # zero frames are a valid (empty) latent
    empty, m0 = latent_from_bytes(latent_to_bytes(np.zeros((8, 0), np.float32), _meta(c, length=0)))
    assert empty.shape == (8, 0) and m0["num_frames"] == 0


def test_latent_writer_refuses_bad_input():
    c = tiny()
    good = np.zeros((8, 50), np.float32)
    with pytest.raises(LatentFileError, match="float16 range"):
        latent_to_bytes(good + 1e6, _meta(c))
    with pytest.raises(LatentFileError, match="NaN"):
        latent_to_bytes(good * np.nan, _meta(c))
    with pytest.raises(LatentFileError, match="floating"):
        latent_to_bytes(good.astype(np.int64), _meta(c))
    with pytest.raises(LatentFileError, match="inconsistent"):
        latent_to_bytes(good, _meta(c, length=3 * 16000))
    with pytest.raises(LatentFileError, match="lacks"):
        latent_to_bytes(good, {"codec": "continuous"})


def _corrupt(kind: str, data: bytes) -> bytes:
    from safetensors.numpy import save

    if kind == "truncated":
        return data[:-10]
    if kind == "trailing":
        return data + b"\0"
    if kind == "bitflip":
        b = bytearray(data)
        b[-3] ^= 0x10
        return bytes(b)
    if kind == "garbage":
        return b"\x00not a latent file" * 20
    if kind == "foreign":  # a valid safetensors file that is not a hasrd latent
        return save({"w": np.zeros(3, np.float32)})
    if kind == "float32":
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        header["latent"]["dtype"] = "F32"
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(8, "little") + raw + data[8 + n:]
    if kind == "empty":
        return b""
    raise ValueError(kind)


@pytest.mark.parametrize("kind, problem", [
    ("truncated", "truncated"), ("trailing", "trailing bytes"), ("bitflip", "checksum"), ("garbage", "not a hasrd latent file"),
    ("foreign", "no hasrd-latent metadata"), ("float32", "float16"), ("empty", "too short"),
])
def test_malformed_latent_bytes_are_one_clear_error(kind, problem, tmp_path):
    c = tiny()
    data = latent_to_bytes(c.encode_to_latent(speechlike(0.5))[0], _meta(c, length=8000))
    bad = _corrupt(kind, data)
    with pytest.raises(LatentFileError, match=problem) as exc:
        latent_from_bytes(bad)
    assert "\n" not in str(exc.value)
    (tmp_path / "bad.hsrl").write_bytes(bad)
    with pytest.raises(LatentFileError, match=problem):
        load_latent(tmp_path / "bad.hsrl")


def test_latent_crc_covers_every_data_byte():
    c = tiny()
    data = bytearray(latent_to_bytes(c.encode_to_latent(speechlike(0.2))[0], _meta(c, length=3200)))
    n = int.from_bytes(data[:8], "little")
    payload = bytes(data[8 + n:])
    assert json.loads(data[8:8 + n])["__metadata__"]["crc32"] == str(zlib.crc32(payload))


# ---------------------------------------------------------------------------------------------
# training: stage 1, then stage 2 warm-started from it


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        sf.write(d / f"utt{i}.wav", speechlike(1.0, seed=i)[0, 0].numpy() * (1 + 0.1 * i), 16000)
    return d


def train(out, data, *extra):
    from hasrd.train import main as train_main

    return train_main(["--config", str(TINY), "--output-dir", str(out), "--no-tensorboard", f"data.train={data}", *extra])


def metrics(out):
    return [json.loads(line) for line in open(out / "metrics.jsonl")]


def test_stage1_learns_the_teacher_features(tmp_path):
    """Teacher-feature reconstruction of a single clip falls clearly in a few dozen steps."""
    d = tmp_path / "one"
    d.mkdir()
    sf.write(d / "clip.wav", speechlike(0.5)[0, 0].numpy(), 16000)
    assert train(tmp_path / "run", d, "train.max_steps=60", "train.batch_size=1", "train.segment_seconds=0.5",
                 "train.ckpt_every=1000", "train.gain_jitter_db=0", "train.lr=2e-3", "train.betas=[0.9,0.999]") == 0
    rows = metrics(tmp_path / "run")
    sem = [r["loss/sem_reg"] for r in rows if "loss/sem_reg" in r]
    assert len(sem) == 60
    assert_learns(sem, 0.6)
    assert all("loss/mel" not in r and "loss/anchor" not in r and "loss/disc" not in r for r in rows)  # no audio in stage 1
    assert all(math.isfinite(r["loss/sem_l1"]) for r in rows if "loss/sem_l1" in r)


def test_stage2_warm_starts_from_stage1_with_a_finite_anchor(corpus, tmp_path):
    s1, s2, s2b = tmp_path / "s1", tmp_path / "s2", tmp_path / "s2b"
    assert train(s1, corpus) == 0
    stage1 = load_codec(s1 / "export")
    assert stage1.stage == 1
    # stage 1 left the generator exactly as initialised (frozen, not run)
    torch.manual_seed(0)
    fresh = build_codec(tiny_cfg())
    assert all(torch.equal(a, b) for a, b in zip(fresh.decoder.state_dict().values(), stage1.decoder.state_dict().values()))

    # stage 2 without a stage-1 model is refused
    assert train(tmp_path / "cold", corpus, "model.stage=2") == 1

    assert train(s2, corpus, "model.stage=2", f"train.init_from={s1 / 'export'}") == 0
    rows = [r for r in metrics(s2) if "loss/total" in r]
    assert len(rows) == 4
    for r in rows:
        for key in ("loss/anchor", "loss/anchor_l2", "loss/mel", "loss/sem_reg"):
            assert math.isfinite(r[key]), (key, r)
    assert rows[0]["loss/anchor_l2"] == 0.0  # the first step starts on the anchor
    stage2 = load_codec(s2 / "export")
    assert stage2.stage == 2
    st1, st2 = stage1.state_dict(), stage2.state_dict()
    # the anchor is the stage-1 model, untouched by stage-2 training; the live parts moved on
    for k, v in st1.items():
        if k.startswith("semantic_head."):
            assert torch.equal(st2["anchor_head." + k[len("semantic_head."):]], v)
        if k.startswith(("bottleneck.", "encoder.")):
            assert torch.equal(st2["anchor_" + k], v)
    assert not all(torch.equal(st1[k], st2[k]) for k in st1 if k.startswith("decoder."))
    assert not all(torch.equal(st1[k], st2[k]) for k in st1 if k.startswith("bottleneck."))

    # continuing stage 2 from a stage-2 export keeps its anchor (not re-taken from the live weights)
    assert train(s2b, corpus, "model.stage=2", f"train.init_from={s2 / 'export'}", "train.max_steps=0") == 0
    st2b = load_codec(s2b / "export").state_dict()
    assert all(torch.equal(st2b[k], v) for k, v in st2.items())


def test_ssl_encoder_variant_saves_and_anchors_without_the_hub(tmp_path):
    """A (tiny, random) HuBERT encoder: stage 2 with the encoder frozen keeps no second SSL copy."""
    from tests.conftest import TINY_HUBERT

    enc = {"type": "ssl", "arch": "hubert", "config": TINY_HUBERT, "num_layers": 1, "trainable": "frozen"}
    s1 = build_codec(tiny_cfg(encoder=enc)).eval()
    x = speechlike(0.3)
    s1.save_pretrained(tmp_path / "s1")
    assert torch.equal(load_codec(tmp_path / "s1").encode_to_latent(x), s1.encode_to_latent(x))
    assert s1.encode_to_latent(x).shape == (1, 8, 15)
    s2 = build_codec(tiny_cfg(encoder=enc, stage=2, freeze=["encoder"]))
    assert s2.anchor_encoder is None and s2.anchor_bottleneck is not None
    s2_full = build_codec(tiny_cfg(encoder=enc, stage=2))  # the projection trains: the encoder is copied
    assert s2_full.anchor_encoder is not None
    assert not any(p.requires_grad for p in s2_full.anchor_encoder.parameters())
