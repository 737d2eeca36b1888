"""Speech enhancement in a codec's latent space: noise, recipe, network, training loop, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from hasrd.codecs.latent import CodecView
from hasrd.enhance import Enhancer, LatentEnhancer, load_enhancer
from hasrd.enhance.noise import NOISES, active_rms, make_noise, mix_at_snr
from hasrd.enhance.recipe import main as recipe_main
from hasrd.train import main as train_main
from tests.conftest import ROOT, assert_learns, speechlike, tiny_codec

SE_CONFIG = ROOT / "codec_configs" / "enhance" / "se_continuous_cpu.yaml"


# ---- noise and mixing -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(NOISES))
def test_every_noise_is_unit_rms_and_reproducible(kind):
    speech = [speechlike(0.7, seed=s)[0, 0].numpy() for s in range(4)]
    a = make_noise(kind, 8000, 16000, np.random.default_rng(3), speech=speech)
    b = make_noise(kind, 8000, 16000, np.random.default_rng(3), speech=speech)
    c = make_noise(kind, 8000, 16000, np.random.default_rng(4), speech=speech)
    assert a.shape == (8000,) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_noise_colours_have_their_spectral_tilt():
    rng = np.random.default_rng(0)
    def low_share(x):  # power below 1 kHz over total
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[: len(p) // 8].sum() / p.sum()
    shares = [low_share(make_noise(k, 32000, 16000, rng)) for k in ("white", "pink", "brown")]
    assert shares[0] < 0.2 < shares[1] < shares[2]


@pytest.mark.parametrize("snr", [-5.0, 0.0, 12.0])
def test_mix_sets_the_snr_against_active_speech_and_never_clips(snr):
    speech = np.concatenate([np.zeros(4000, np.float32), 0.9 * speechlike(0.5)[0, 0].numpy() / 0.2])
    noise = make_noise("white", speech.size, 16000, np.random.default_rng(1))
    clean, noisy = mix_at_snr(speech, noise, snr, 16000)
    measured = 20 * np.log10(active_rms(clean, 16000) / np.sqrt(np.mean((noisy - clean).astype(np.float64) ** 2)))
    assert measured == pytest.approx(snr, abs=0.05)
    assert np.abs(noisy).max() <= 0.95 + 1e-6
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(np.zeros(100, np.float32), np.ones(100, np.float32), 0.0, 16000)


# ---- the recipe -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    for i in range(6):
        sf.write(d / f"utt{i}.wav", speechlike(1.2 + 0.1 * i, seed=i)[0, 0].numpy(), 16000)
    sf.write(d / "short.wav", speechlike(0.3)[0, 0].numpy(), 16000)
    (d / "transcripts.tsv").write_text("utt0\thello world\n")
    return d


def make_pairs(speech_dir, out, *extra):
    return recipe_main(["--speech", str(speech_dir), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def pairs(speech_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("se") / "pairs"
    assert make_pairs(speech_dir, out, "--versions", "2", "--snrs", "0,5") == 0
    return out


def test_recipe_writes_aligned_pairs_and_a_manifest(pairs):
    rows = [json.loads(line) for line in open(pairs / "manifest.jsonl")]
    assert len(rows) == 12  # 6 usable utterances x 2 versions; the 0.3 s one is skipped
    assert {r["snr"] for r in rows} <= {0.0, 5.0} and {r["noise"] for r in rows} <= set(NOISES)
    assert [r["text"] for r in rows if r["path"].endswith("utt0.wav")] == ["hello world"] * 2
    for r in rows:
        clean, sr = sf.read(pairs / r["path"])
        noisy, _ = sf.read(pairs / r["noisy"])
        assert sr == 16000 and clean.shape == noisy.shape and np.abs(noisy).max() <= 0.951
        snr = 20 * np.log10(active_rms(clean, 16000) / np.sqrt(np.mean((noisy - clean) ** 2)))
        assert snr == pytest.approx(r["snr"], abs=0.3)  # 16-bit rounding aside
    assert json.loads((pairs / "recipe.json").read_text())["pairs"] == 12


def test_recipe_is_reproducible_and_refuses_to_overwrite(speech_dir, pairs, tmp_path, capsys):
    again = tmp_path / "again"
    assert make_pairs(speech_dir, again, "--versions", "2", "--snrs", "0,5") == 0
    assert (again / "manifest.jsonl").read_text() == (pairs / "manifest.jsonl").read_text()
    first = next(json.loads(line) for line in open(again / "manifest.jsonl"))
    assert np.array_equal(sf.read(again / first["noisy"])[0], sf.read(pairs / first["noisy"])[0])
    capsys.readouterr()
    assert make_pairs(speech_dir, again) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]
    assert make_pairs(tmp_path / "nothing_here", tmp_path / "x") == 1 and not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".x.tmp-*"))


# ---- the network ------------------------------------------------------------------------------


TINY_NET = {"d_model": 16, "heads": 2, "ffn": 32, "layers": 1, "kernel": 3, "dropout": 0.0}


def test_continuous_network_starts_as_identity_and_masks_padding():
    net = LatentEnhancer({**TINY_NET, "form": "continuous", "latent_dim": 8})
    x = torch.randn(2, 8, 10)
    assert torch.equal(net(x), x)
    y = torch.randn(2, 8, 10)
    lengths = torch.tensor([10, 6])
    loss, _ = net.loss(x, y, lengths)
    y2 = y.clone()
    y2[1, :, 6:] += 100.0  # padding of item 2 must not count
    assert torch.equal(loss, net.loss(x, y2, lengths)[0])


def test_tokens_network_predicts_every_codebook():
    net = LatentEnhancer({**TINY_NET, "form": "tokens", "n_q": 3, "codebook_size": 5})
    codes = torch.randint(0, 5, (2, 3, 7))
    logits = net(codes)
    assert logits.shape == (2, 3, 7, 5)
    loss, logs = net.loss(logits, codes, torch.tensor([7, 7]))
    assert loss > 0 and set(logs) == {"ce", "acc_q1", "acc_q2", "acc_q3"}
    with pytest.raises(ValueError, match="codebooks"):
        net(codes[:, :2])


# ---- training on the codec trainer's loop, export, CLI -------------------------------------------


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("codec")
    tiny_codec("hasrd").save_pretrained(d)
    return d


def train(out, codec_dir, pairs, form, *extra):
    return train_main(["--config", str(SE_CONFIG), "--output-dir", str(out), "--no-tensorboard",
                       f"enhance.codec={codec_dir}", f"enhance.form={form}", f"data.train={pairs / 'manifest.jsonl'}",
                       f"data.val={pairs / 'manifest.jsonl'}", "model.d_model=32", "model.ffn=64", "model.layers=1",
                       "model.heads=2", "model.kernel=3", "train.batch_size=4",
                       "enhance.crop_frames=20", "train.max_steps=4", "train.ckpt_every=2", "train.log_every=1",
                       "train.val_every=4", "train.val_files=2", "train.warmup_steps=0", *extra])


def losses(run):
    return {r["step"]: r["loss/total"] for r in map(json.loads, open(run / "metrics.jsonl")) if "loss/total" in r}


@pytest.mark.parametrize("form", ["continuous", "tokens"])
def test_training_exports_an_enhancer_that_keeps_the_length(form, codec_dir, pairs, tmp_path):
    assert train(tmp_path, codec_dir, pairs, form) == 0
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-00000002", "ckpt-00000004"]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert any("val/loss" in r for r in rows) and set(losses(tmp_path)) == {1, 2, 3, 4}
    enh = load_enhancer(tmp_path / "export")
    assert isinstance(enh, Enhancer) and enh.form == form
    assert enh.codec.fingerprint() == load_enhancer(tmp_path / "export").codec.fingerprint()
    x = speechlike(0.77)
    y = enh.enhance(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (enh.bitrate > 0) == (form == "tokens")
    # the features were computed once, next to the manifest, named after the codec, and reused
    from hasrd.enhance.features import cache_path

    assert cache_path(pairs / "manifest.jsonl", enh.codec).is_file()
    assert cache_path(pairs / "manifest.jsonl", enh.codec).name == f"features-{enh.codec.fingerprint()}.safetensors"


def test_resume_continues_exactly(codec_dir, pairs, tmp_path):
    assert train(tmp_path / "a", codec_dir, pairs, "continuous", "train.max_steps=4") == 0
    assert train(tmp_path / "b", codec_dir, pairs, "continuous", "train.max_steps=2") == 0
    assert train(tmp_path / "b", codec_dir, pairs, "continuous", "train.max_steps=4", "--resume") == 0
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert a[3] == b[3] and a[4] == b[4]


def test_regression_learns_to_remove_noise(codec_dir, pairs, tmp_path):
    """The continuous loss on the training pairs falls well below its start (it learns, not a no-op)."""
    assert train(tmp_path, codec_dir, pairs, "continuous", "train.max_steps=150", "train.lr=3e-3",
                 "train.val_every=0", "train.ckpt_every=1000") == 0
    loss = losses(tmp_path)
    assert sorted(loss) == list(range(1, 151))
    assert_learns([loss[s] for s in range(1, 151)], 0.6)


def test_a_config_error_is_one_line(codec_dir, pairs, tmp_path, capsys):
    assert train(tmp_path, codec_dir, pairs, "sideways") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "enhance.form" in err[0]


def test_the_view_of_a_dual_stream_codec_is_both_latents_and_all_codes():
    """hcodec: the latent is [semantic; acoustic] before quantization, the codes are the codec's own,
    and requantizing the latent decodes to exactly what the codec decodes from those codes."""
    from hasrd.codecs import CodecView

    codec = tiny_codec("hcodec")
    view = CodecView(codec)
    wav = speechlike(0.4)
    z, codes = view.analyse(wav)
    assert view.latent_dim == codec.config["semantic_dim"] + codec.config["acoustic_dim"] == z.shape[1]
    assert torch.equal(codes, codec.encode(wav))
    assert torch.allclose(view.synthesize_latent(z, requantize=True), codec.decode(codes))
    direct = view.synthesize_latent(z, requantize=False)
    assert direct.shape == codec.decode(codes).shape and not torch.allclose(direct, codec.decode(codes))


def test_an_enhancer_export_dtype_other_than_float32_is_refused_before_setup(codec_dir, tmp_path, capsys):
    # data that does not exist: the refusal must come before setup reads it or makes the run folder
    out = tmp_path / "run"
    capsys.readouterr()
    assert train(out, codec_dir, tmp_path / "missing", "continuous", "--export", "--export-dtype", "float16") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "float16" in err[0] and "float32 only" in err[0]
    assert not out.exists()


# ---- hasrd enhance -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def enhancer_dir(codec_dir, pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("enh")
    assert train(out, codec_dir, pairs, "continuous", "train.max_steps=2", "train.val_every=0") == 0
    return out / "export"


def test_cli_enhances_files_and_folders(enhancer_dir, speech_dir, tmp_path, capsys):
    from hasrd.cli import main

    stereo = tmp_path / "in" / "stereo.flac"
    stereo.parent.mkdir()
    x = speechlike(0.9)[0, 0].numpy()
    sf.write(stereo, np.stack([x, 0.5 * x], 1), 22050)
    assert main(["enhance", str(stereo), "-o", str(tmp_path / "one.wav"), "--model", str(enhancer_dir)]) == 0
    y, sr = sf.read(tmp_path / "one.wav")
    assert sr == 22050 and y.shape == (x.size, 2)
    assert main(["enhance", str(speech_dir), "-o", str(tmp_path / "dir"), "--model", str(enhancer_dir)]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").glob("*.wav")) == sorted(p.name for p in speech_dir.glob("*.wav"))
    # an existing single output is refused, a folder run skips what is done
    capsys.readouterr()
    assert main(["enhance", str(stereo), "-o", str(tmp_path / "one.wav"), "--model", str(enhancer_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]


def test_cli_bad_enhancer_is_a_usage_error(tmp_path, speech_dir, capsys):
    from hasrd.cli import main

    assert main(["enhance", str(speech_dir / "utt0.wav"), "-o", str(tmp_path / "o.wav"), "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hasrd: error:") and "enhancer" in err[0]
    assert not (tmp_path / "o.wav").exists()


def test_a_continuous_codec_gets_the_continuous_form_only(pairs, tmp_path, capsys):
    from hasrd.codecs import build_codec
    from hasrd.config import load_config

    torch.manual_seed(0)
    cfg = load_config(ROOT / "codec_configs" / "debug" / "continuous_tiny.yaml")["model"]
    build_codec(cfg).eval().save_pretrained(tmp_path / "ctiny")
    assert train(tmp_path / "run", tmp_path / "ctiny", pairs, "continuous", "train.max_steps=2", "train.val_every=0") == 0
    enh = load_enhancer(tmp_path / "run" / "export")
    x = speechlike(0.5)
    assert enh.enhance(x).shape == x.shape and enh.bitrate == 0.0
    capsys.readouterr()
    assert train(tmp_path / "run2", tmp_path / "ctiny", pairs, "tokens", "train.max_steps=2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokens form" in err[0]


def test_an_enhancer_on_a_builtin_codec_names_it_instead_of_copying_it(tmp_path):
    """A built-in codec is named in the export (no second copy of its weights) and loaded from the
    package; an export whose named codec has other weights is refused in one line; another codec
    is copied."""
    from hasrd.codecs import load_codec

    codec = load_codec("default")
    net = LatentEnhancer({**TINY_NET, "form": "continuous", "latent_dim": CodecView(codec).latent_dim})
    enh = Enhancer(codec, net).eval()
    enh.save_pretrained(tmp_path / "named")
    meta = json.loads((tmp_path / "named" / "enhancer.json").read_text())
    assert meta["codec"] == "default" and meta["codec_fingerprint"] == codec.fingerprint()
    assert not (tmp_path / "named" / "codec").exists()
    back = load_enhancer(tmp_path / "named")
    x = speechlike(0.3)
    assert back.codec.fingerprint() == codec.fingerprint()
    assert torch.allclose(back.enhance(x), enh.enhance(x), atol=1e-6)
    meta["codec_fingerprint"] = "0" * 16  # trained on weights the package no longer has
    (tmp_path / "named" / "enhancer.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="built-in codec default") as e:
        load_enhancer(tmp_path / "named")
    assert "\n" not in str(e.value)
    own = tiny_codec("hasrd")
    Enhancer(own, LatentEnhancer({**TINY_NET, "form": "continuous", "latent_dim": int(own.config["latent_dim"])})
             ).save_pretrained(tmp_path / "copied")
    assert (tmp_path / "copied" / "codec" / "model.safetensors").is_file()
    assert "codec" not in json.loads((tmp_path / "copied" / "enhancer.json").read_text())
