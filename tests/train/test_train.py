"""Trainer behaviour on the tiny debug config: smoke, exact resume, 2 processes, overfit, atomic checkpoints."""
import json
import os
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from hasrd.codecs import load_codec
from hasrd.train import main as train_main
from tests.conftest import ROOT, TINY_CONFIGS, assert_learns, speechlike


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        x = speechlike(1.0, seed=i)[0, 0].numpy() * (1 + 0.1 * i)
        sf.write(d / f"utt{i}.wav", x, 16000)
    return d


def run(cfg, out, corpus, *extra):
    return train_main(["--config", str(TINY_CONFIGS[cfg]), "--output-dir", str(out), "--no-tensorboard",
                       f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200", *extra])


def losses(out):
    return {r["step"]: r["loss/total"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss/total" in r}


@pytest.mark.parametrize("cfg", ["hasrd", "hcodec"])
def test_one_run_trains_checkpoints_and_exports(cfg, corpus, tmp_path):
    assert run(cfg, tmp_path, corpus) == 0
    ckpts = sorted(p.name for p in tmp_path.glob("ckpt-*"))
    assert ckpts == ["ckpt-00000002", "ckpt-00000004"]
    assert all((tmp_path / c / "COMPLETE").exists() and (tmp_path / c / "config.yaml").exists() for c in ckpts)
    assert not list(tmp_path.glob(".tmp-ckpt-*"))
    codec = load_codec(tmp_path / "export")
    assert codec.encode(speechlike(0.2)).shape[1] == codec.num_codebooks
    assert set(losses(tmp_path)) == {1, 2, 3, 4}


def test_resume_continues_exactly(corpus, tmp_path, capsys):
    assert run("hasrd", tmp_path / "a", corpus, "train.max_steps=6") == 0
    assert run("hasrd", tmp_path / "b", corpus, "train.max_steps=4") == 0
    # a half-written checkpoint (no COMPLETE marker) must be ignored by --resume, and a complete one
    # whose weights were truncated afterwards (a full disk, a damaged copy) falls back to the one before
    (tmp_path / "b" / "ckpt-00000009").mkdir()
    weights = tmp_path / "b" / "ckpt-00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()
    assert run("hasrd", tmp_path / "b", corpus, "train.max_steps=6", "--resume") == 0
    out = capsys.readouterr()
    assert "ckpt-00000004 does not load" in out.out + out.err and "resumed from" in out.out + out.err
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    for step in (3, 4, 5, 6):
        assert a[step] == b[step], (step, a[step], b[step])


def test_two_processes_with_accelerate_launch(corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "train.py"), "--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(tmp_path),
           "--no-tensorboard", f"data.train={corpus}", "teacher.n_units=16", "train.kmeans_frames=200"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ckpt-00000004" / "COMPLETE").exists()
    # each process saved its own RNG state
    assert {p.name for p in (tmp_path / "ckpt-00000004").glob("random_states_*")} == {"random_states_0.pkl", "random_states_1.pkl"}
    assert load_codec(tmp_path / "export").num_codebooks == 4
    assert "with 2 processes" in proc.stdout + proc.stderr


def test_overfit_one_clip(tmp_path):
    """Mel reconstruction of a single short clip must fall clearly in a few dozen steps."""
    d = tmp_path / "one"
    d.mkdir()
    sf.write(d / "clip.wav", speechlike(0.5)[0, 0].numpy(), 16000)
    assert train_main(["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(tmp_path / "run"), "--no-tensorboard",
                       f"data.train={d}", "train.max_steps=60", "train.batch_size=1", "train.segment_seconds=0.5",
                       "train.ckpt_every=1000", "train.disc_start=1000", "train.gain_jitter_db=0",
                       "model.quantizer.dropout=0", "teacher=null", "model.semantic_head={}",
                       "loss_weights={mel: 1.0, vq: 0.1}", "train.lr=3e-3", "train.log_every=1"]) == 0
    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    mel = [r["loss/mel"] for r in rows if "loss/mel" in r]
    assert len(mel) == 60
    assert_learns(mel, 0.6)


def test_bad_config_is_one_clear_error(tmp_path, capsys):
    assert train_main(["--config", str(tmp_path / "missing.yaml"), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such config file" in err[0]


@pytest.mark.parametrize("case", ["export_without_checkpoint", "no_data", "teacher_mismatch"])
def test_a_refused_run_leaves_no_folder_behind(corpus, tmp_path, capsys, case):
    run_dir = tmp_path / "run"
    extra = {"export_without_checkpoint": ["--export"], "no_data": [f"data.train={tmp_path / 'nothing'}"],
             "teacher_mismatch": ["teacher.n_units=7"]}[case]
    argv = ["--config", str(TINY_CONFIGS["hasrd"]), "--output-dir", str(run_dir), f"data.train={corpus}", *extra]
    assert train_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error:"), err
    assert not run_dir.exists()  # not even config.yaml or the tensorboard folder


@pytest.mark.parametrize("config,override,message", [
    ("hasrd", "trian.max_steps=3", "trian: unknown config section; did you mean train?"),
    ("hasrd", "train.batchsize=3", "train.batchsize: unknown setting; did you mean train.batch_size?"),
    ("lm", "lm.crop_frame=5", "lm.crop_frame: unknown setting; did you mean lm.crop_frames?"),
    ("hasrd", "model.quantizer.codebook_sise=64", "model.quantizer.codebook_sise: unknown setting; did you mean "
                                                 "model.quantizer.codebook_size?"),
    ("hasrd", "model.quantizer.bogus=3", "model.quantizer.bogus: unknown setting (codec 'hasrd' does not read it)"),
    ("hasrd", "model.decodr={dim: 8}", "model.decodr: unknown setting; did you mean model.decoder?"),
    ("lm", "model.cond_layer=1", "model.cond_layer: unknown setting; did you mean model.cond_layers?"),
])
def test_a_misspelt_key_is_refused_naming_the_nearest_one(corpus, tmp_path, capsys, config, override, message):
    path = TINY_CONFIGS["hasrd"] if config == "hasrd" else ROOT / "codec_configs" / "lm" / "lm_tiny.yaml"
    assert train_main(["--config", str(path), "--output-dir", str(tmp_path / "run"), f"data.train={corpus}",
                       override]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"train.py: error: {message}"]
    assert not (tmp_path / "run").exists()


def test_warm_start_from_an_exported_model(corpus, tmp_path):
    """train.init_from starts from exported weights (no k-means re-init), and refuses another architecture."""
    assert run("hasrd", tmp_path / "a", corpus) == 0
    exported = load_codec(tmp_path / "a" / "export")
    assert run("hasrd", tmp_path / "b", corpus, "train.max_steps=0", f"train.init_from={tmp_path / 'a' / 'export'}") == 0
    warm = load_codec(tmp_path / "b" / "export")
    x = speechlike(0.3)
    assert (warm.encode(x) == exported.encode(x)).all()
    assert (warm.decode(warm.encode(x)) == exported.decode(exported.encode(x))).all()
    # a model of another shape is refused with one clear error
    code = run("hasrd", tmp_path / "c", corpus, "model.quantizer.n_acoustic=2",
               f"train.init_from={tmp_path / 'a' / 'export'}")
    assert code == 1


def test_new_decoder_on_frozen_codes(corpus, tmp_path):
    """train.init_only + model.freeze: a new (iSTFT) decoder trains on the encoder and codebooks of
    an exported model, which come through unchanged (same codes); unknown parts are refused."""
    assert run("hasrd", tmp_path / "a", corpus, "train.max_steps=2") == 0
    first = load_codec(tmp_path / "a" / "export")
    new_decoder = ["model.decoder={type: istft, dim: 32, hidden: 64, layers: 2}",
                   f"train.init_from={tmp_path / 'a' / 'export'}", "teacher=null"]
    assert run("hasrd", tmp_path / "b", corpus, *new_decoder, "train.init_only=[encoder,quantizer,semantic_head]",
               "model.freeze=[encoder,quantizer,semantic_head]") == 0
    second = load_codec(tmp_path / "b" / "export")
    x = speechlike(0.5, seed=4)
    assert (second.encode(x) == first.encode(x)).all()
    assert type(second.decoder).__name__ == "IstftGenerator"
    assert any(r.get("loss/mel") for r in map(json.loads, open(tmp_path / "b" / "metrics.jsonl")))
    # without init_only the architectures differ; an unknown part is refused; both with exit 1
    assert run("hasrd", tmp_path / "c", corpus, *new_decoder) == 1
    assert run("hasrd", tmp_path / "d", corpus, *new_decoder, "train.init_only=[vocoder]") == 1
    # decoder.phase only changes how the head is read: the whole decoder warm-starts across it
    assert run("hasrd", tmp_path / "e", corpus, "model.decoder={type: istft, dim: 32, hidden: 64, layers: 2, phase: integrated}",
               f"train.init_from={tmp_path / 'b' / 'export'}", "teacher=null", "train.max_steps=0") == 0
    third = load_codec(tmp_path / "e" / "export")
    assert third.decoder.phase == "integrated"
    for k, v in second.decoder.state_dict().items():
        assert torch.equal(third.decoder.state_dict()[k], v), k


def test_generator_pass_trains_the_generator_only(tmp_path):
    """The generator's view of the discriminator: gradients reach the fake audio, not the
    discriminator's weights; the real half carries no graph; features equal a joint pass."""
    import contextlib

    import torch

    from hasrd.decoders import Discriminator
    from hasrd.train.codec_task import generator_pass

    disc = Discriminator(periods=[2, 3], period_channels=4, period_max_channels=8, fft_sizes=[256], stft_channels=4)
    real = speechlike(0.2)
    fake = (0.5 * speechlike(0.2, seed=3)).requires_grad_(True)
    r, f = generator_pass(disc, real, fake, contextlib.nullcontext)
    assert all(not t.requires_grad for fs in r for t in fs)
    sum(fs[-1].mean() for fs in f).backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert all(p.grad is None and p.requires_grad for p in disc.parameters())
    with torch.no_grad():
        joint = disc(torch.cat([real, fake.detach()]))
    for fs_r, fs_f, fs_j in zip(r, f, joint):
        torch.testing.assert_close(fs_r[-1], fs_j[-1][:1])
        torch.testing.assert_close(fs_f[-1].detach(), fs_j[-1][1:])


@pytest.mark.parametrize("good, bad, key", [
    (["train.speed_perturb=[0.9,1.1]"], ["train.speed_perturb=[3.0]"], "train.speed_perturb"),
    (["train.augment.p_lowpass=1.0", "train.augment.lowpass_hz=[1000,1000]"], ["train.augment.p_reverb=2"],
     "train.augment.p_reverb"),
])
def test_crop_augmentation_is_wired_and_checked(corpus, tmp_path, capsys, good, bad, key):
    """Speed perturbation (with on-the-fly teacher targets) and channel augmentation change what
    the model sees; a bad value is one clear error before any step."""
    assert run("hasrd", tmp_path / "a", corpus, "train.max_steps=2") == 0
    assert run("hasrd", tmp_path / "b", corpus, "train.max_steps=2", *good) == 0
    assert losses(tmp_path / "a")[1] != losses(tmp_path / "b")[1]
    capsys.readouterr()
    assert run("hasrd", tmp_path / "c", corpus, *bad) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    assert not list((tmp_path / "c").glob("ckpt-*"))


@pytest.mark.parametrize("aperiodic, forcing", [("noise", False), ("phase", False), ("phase", True)])
def test_harmonic_decoder_warm_starts_and_learns_pitch(corpus, tmp_path, aperiodic, forcing):
    """decoder.source: harmonic re-reads a trained iSTFT decoder's head and adds a pitch head
    (and, with aperiodic: phase, a share head), which start from scratch; its runs log the f0 and
    vuv losses against the crops' own pitch. pitch_forcing (training-only) does not stop the warm start."""
    istft = "model.decoder={type: istft, dim: 32, hidden: 64, layers: 2}"
    harmonic = (f"model.decoder={{type: istft, dim: 32, hidden: 64, layers: 2, source: harmonic, aperiodic: {aperiodic}, "
                f"pitch_forcing: {str(forcing).lower()}}}")
    pitch = ["loss_weights.f0=1.0", "loss_weights.vuv=1.0"]
    assert run("hasrd", tmp_path / "a", corpus, istft, "teacher=null", "train.max_steps=2") == 0
    assert run("hasrd", tmp_path / "b", corpus, harmonic, "teacher=null", *pitch, "train.max_steps=0",
               f"train.init_from={tmp_path / 'a' / 'export'}") == 0
    before, after = load_codec(tmp_path / "a" / "export"), load_codec(tmp_path / "b" / "export")
    assert after.decoder.source == "harmonic" and after.decoder.pitch_forcing is forcing
    for k, v in before.decoder.state_dict().items():
        assert torch.equal(after.decoder.state_dict()[k], v), k
    assert any(k.startswith("pitch_head.") for k in after.decoder.state_dict())
    assert any(k.startswith("share_head.") for k in after.decoder.state_dict()) == (aperiodic == "phase")
    assert run("hasrd", tmp_path / "c", corpus, harmonic, "teacher=null", *pitch, "train.max_steps=3",
               f"train.init_from={tmp_path / 'a' / 'export'}") == 0
    rows = [json.loads(line) for line in open(tmp_path / "c" / "metrics.jsonl")]
    f0 = [r["loss/f0"] for r in rows if "loss/f0" in r]
    assert len(f0) == 3 and all(0 < v < 4 for v in f0)  # octaves, on the voiced speechlike crops
    assert all("loss/vuv" in r for r in rows if "loss/total" in r)


def lrs(out):
    return {r["step"]: r["lr"] for r in map(json.loads, open(out / "metrics.jsonl")) if "lr" in r}


def test_lr_anneal_is_a_cosine_to_zero_on_top_of_the_decay():
    from hasrd.train import TrainConfig, TrainingError, lr_lambda

    base = {"warmup_steps": 10, "lr_decay": 0.99}
    plain = lr_lambda(TrainConfig.from_dict(base))
    f = lr_lambda(TrainConfig.from_dict({**base, "anneal_start": 100, "anneal_steps": 50}))
    assert [f(s) for s in (0, 9, 50, 100)] == [plain(s) for s in (0, 9, 50, 100)]
    assert f(125) == pytest.approx(0.5 * plain(125))
    assert f(101) < plain(101)
    assert f(150) == pytest.approx(0.0, abs=1e-12) and f(500) == pytest.approx(0.0, abs=1e-12)
    for bad in ({"anneal_start": 5}, {"anneal_start": -1, "anneal_steps": 3}):
        with pytest.raises(TrainingError, match="anneal_start"):
            TrainConfig.from_dict({**base, **bad})


def test_an_anneal_added_on_resume_continues_like_one_planned_from_the_start(corpus, tmp_path, capsys):
    anneal = ["train.anneal_start=3", "train.anneal_steps=3", "train.log_every=1"]
    assert run("hasrd", tmp_path / "a", corpus, "train.max_steps=6", *anneal) == 0
    assert run("hasrd", tmp_path / "b", corpus, "train.max_steps=2", "train.log_every=1") == 0
    assert run("hasrd", tmp_path / "b", corpus, "train.max_steps=6", *anneal, "--resume") == 0
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    for step in (3, 4, 5, 6):
        assert a[step] == b[step], (step, a[step], b[step])
    lr_a, lr_b = lrs(tmp_path / "a"), lrs(tmp_path / "b")
    assert lr_a == lr_b
    assert lr_a[2] > lr_a[4] > lr_a[5] > lr_a[6] > 0  # the lr of each logged step's update
    from hasrd.config import load_config
    from hasrd.train import TrainConfig, lr_lambda

    t = TrainConfig.from_dict(load_config(tmp_path / "a" / "config.yaml")["train"])
    assert all(lr_a[s] == pytest.approx(t.lr * lr_lambda(t)(s - 1)) for s in range(1, 7))
    assert lr_lambda(t)(6) == 0.0  # the anneal ends at 0
    capsys.readouterr()
    assert run("hasrd", tmp_path / "c", corpus, "train.anneal_start=3") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.anneal_start" in err[0], err
    assert not (tmp_path / "c").exists()  # refused before anything is written


def test_export_can_store_float16_weights(corpus, tmp_path, capsys):
    from safetensors import safe_open

    assert run("hasrd", tmp_path, corpus, "train.max_steps=2") == 0
    f32 = (tmp_path / "export" / "model.safetensors").stat().st_size
    assert run("hasrd", tmp_path, corpus, "train.max_steps=2", "--export", "--export-dtype", "float16") == 0
    with safe_open(str(tmp_path / "export" / "model.safetensors"), "pt") as f:
        assert f.metadata()["dtype"] == "float16"
    assert (tmp_path / "export" / "model.safetensors").stat().st_size < 0.55 * f32
    assert load_codec(tmp_path / "export").encode(speechlike(0.2)).dtype == torch.long
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run("hasrd", tmp_path / "b", corpus, "--export-dtype", "float16")
    assert exc.value.code == 2 and "--export-dtype needs --export" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
