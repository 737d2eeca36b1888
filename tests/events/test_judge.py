"""The fixed event judge (hasrd.events.judge): embedding, classifier, Fréchet distance,
score_generated and the command, on a tiny synthesised events set."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hasrd.events import judge as J, recipe
from hasrd.io.audio import load_audio


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    d = tmp_path_factory.mktemp("judge") / "events"
    assert recipe.main(["--out", str(d), "--no-packages", "--per-class", "12", "--seconds", "0.5",
                        "--eval-fraction", "0.3", "--no-progress"]) == 0
    return d


@pytest.fixture(scope="module")
def fitted(events):
    return J.EventJudge.fit(events, min_train=5)


def _clips(events, split, name=None):
    rows = J.read_manifest(events, split=split)
    return [(r["class"], load_audio(r["file"], 16000)[0][0]) for r in rows if name is None or r["class"] == name]


def test_embed_is_fixed_and_deterministic(events):
    _, x = _clips(events, "eval")[0]
    a, b = J.embed(x, 16000), J.embed(x.copy(), 16000)
    assert a.shape == (J.EMBED_DIM,) == (260,) and a.dtype == np.float64
    assert np.array_equal(a, b) and np.isfinite(a).all()
    assert np.allclose(J.embed(0.1 * x, 16000), a)  # gain is normalised away
    assert J.embed(np.stack([x, x]), 16000) == pytest.approx(a)  # channels are averaged
    assert J.embed(np.zeros(100, np.float32), 16000).shape == (260,)  # short and silent clips
    with pytest.raises(ValueError):
        J.embed(np.zeros(0), 16000)


def test_embed_resamples_to_16k(events):
    import librosa

    _, x = _clips(events, "eval")[0]
    up = librosa.resample(x.astype(np.float64), orig_sr=16000, target_sr=22050)
    a, b = J.embed(x, 16000), J.embed(up, 22050)
    assert np.abs(a - b).mean() < 1.0  # dB-scale features: close, not identical


def test_judge_classifies_held_out_clips(events, fitted):
    assert fitted.classes == sorted(recipe.CLASSES)
    assert fitted.info["backend"] in ("sklearn", "numpy") and fitted.info["train_clips"]["bell"] == 8
    held = _clips(events, "eval")
    labels = fitted.predict([x for _, x in held], 16000)
    acc = np.mean([lab == c for (c, _), lab in zip(held, labels)])
    assert acc > 0.6, acc
    p = fitted.proba([x for _, x in held[:3]], 16000)
    assert p.shape == (3, 9) and np.allclose(p.sum(1), 1)


def test_min_train_restricts_the_classes(events):
    with pytest.raises(ValueError, match="at least 9 training clips"):
        J.EventJudge.fit(events, min_train=9)


def test_numpy_backend_agrees(events, fitted):
    rows = J.read_manifest(events, split="train")
    emb = J._embed_rows(rows)
    other = J.EventJudge.fit_embeddings(emb, [r["class"] for r in rows], min_train=5, backend="numpy")
    held = J._embed_rows(J.read_manifest(events, split="eval"))
    agree = np.mean(np.array(other.predict_embeddings(held)) == np.array(fitted.predict_embeddings(held)))
    assert agree >= 0.9


def test_save_load_round_trip(tmp_path, events, fitted):
    fitted.save(tmp_path / "j")
    assert sorted(p.name for p in (tmp_path / "j").iterdir()) == ["judge.json", "judge.npz"]
    back = J.EventJudge.load(tmp_path / "j")
    clips = [x for _, x in _clips(events, "eval")]
    assert back.classes == fitted.classes and back.predict(clips, 16000) == fitted.predict(clips, 16000)
    assert np.array_equal(back.proba(clips, 16000), fitted.proba(clips, 16000))
    with pytest.raises(ValueError):
        J.EventJudge.load(tmp_path)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)), rng.normal(size=(30, 8))
    assert J.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    near, far = J.frechet_distance(x, y), J.frechet_distance(x, y + 3.0)
    assert 0 < near < far and far == pytest.approx(near + 8 * 9.0, rel=0.1)
    assert J.frechet_distance(y, x) == pytest.approx(near, rel=1e-9)
    assert J.frechet_distance(x[:3], y[:2]) >= 0  # fewer vectors than dimensions
    with pytest.raises(ValueError, match="at least 2"):
        J.frechet_distance(x[:1], y)
    with pytest.raises(ValueError, match="dimensions"):
        J.frechet_distance(x, y[:, :4])


def test_score_generated_real_and_wrong_class(events, fitted):
    real = {c: [x for _, x in _clips(events, "eval", c)] for c in ("bell", "siren", "wind")}
    good = J.score_generated(fitted, real, 16000, events)
    assert good["mean_accuracy"] >= 0.9 and good["chance"] == pytest.approx(1 / 9)
    assert good["classes"]["bell"]["n"] == 4 and good["classes"]["bell"]["fd"] == pytest.approx(0, abs=1e-3)
    wrong = J.score_generated(fitted, {"bell": real["wind"], "siren": real["bell"], "wind": real["siren"]}, 16000, events)
    assert wrong["mean_accuracy"] <= 0.25
    assert wrong["mean_fd"] > 10 * max(good["mean_fd"], 1.0)
    with pytest.raises(ValueError, match="unknown"):
        J.score_generated(fitted, {"trumpet": real["bell"]}, 16000, events)


def test_cli_writes_the_report(tmp_path, events, capsys):
    out = tmp_path / "j"
    assert J.main(["--events", str(events), "--out", str(out), "--min-train", "5", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "judge.json", "judge.npz", "report.json", "report.md"]
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"] > 0.6 and rep["eval_clips"] == 36 and len(rep["confusion"]) == 9
    assert sum(map(sum, rep["confusion"])) == 36
    assert rep["fd_between_mean"] > rep["fd_same_mean"] > 0
    md = (out / "report.md").read_text()
    assert md in capsys.readouterr().out and "Held-out accuracy" in md
    assert J.EventJudge.load(out).classes == rep["classes"]


@pytest.mark.parametrize("case", ["missing", "exists"])
def test_cli_refusals(tmp_path, events, capsys, case):
    out = tmp_path / "j"
    if case == "missing":
        argv = ["--events", str(tmp_path / "nothing"), "--out", str(out)]
    else:
        out.mkdir()
        (out / "keep").write_text("x")
        argv = ["--events", str(events), "--out", str(out), "--no-progress"]
    assert J.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("judge: error:")
    if case == "missing":
        assert not out.exists()
    else:
        assert [p.name for p in out.iterdir()] == ["keep"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
