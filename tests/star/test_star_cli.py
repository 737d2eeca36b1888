"""``hasrd speak-to-audio`` and the spoken-prompt check."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from hasrd.cli import main
from hasrd.star.prompt_check import check_prompt
from tests.conftest import speechlike
from tests.star.conftest import prompt_wave

SR = 16000


def _wav(path, x, sr=SR):
    sf.write(path, np.asarray(x, np.float32), sr)
    return path


def _tone(seconds=1.0, f=440.0):
    t = np.arange(int(seconds * SR)) / SR
    return 0.3 * np.sin(2 * np.pi * f * t)


def test_the_cli_writes_the_requested_length(stage2, tmp_path, capsys):
    prompt = _wav(tmp_path / "p.wav", speechlike(1.0)[0, 0].numpy())
    out = tmp_path / "o.wav"
    assert main(["speak-to-audio", str(prompt), "-o", str(out), "--model", str(stage2 / "export"),
                 "--steps", "2", "--seconds", "0.7", "--seed", "3", "--guidance", "1.5"]) == 0
    y, sr = sf.read(out)
    assert sr == 16000 and y.shape == (11200,) and np.isfinite(y).all()
    assert main(["speak-to-audio", str(prompt), "-o", str(out), "--model", str(stage2 / "export")]) == 2  # exists
    assert "--force" in capsys.readouterr().err


def test_every_refusal_is_one_line_and_writes_nothing(stage1, stage2, tmp_path, capsys):
    good = _wav(tmp_path / "good.wav", speechlike(1.0)[0, 0].numpy())
    (tmp_path / "text.wav").write_text("not audio")
    cases = {
        "missing": ([str(tmp_path / "nope.wav")], "nope.wav"),
        "unreadable": ([str(tmp_path / "text.wav")], "text.wav"),
        "empty": ([str(_wav(tmp_path / "empty.wav", np.zeros(0)))], "empty"),
        "silent": ([str(_wav(tmp_path / "silent.wav", np.zeros(SR)))], "silent"),
        "tone": ([str(_wav(tmp_path / "tone.wav", _tone()))], "speech"),
        "steps": ([str(good), "--steps", "0"], "--steps"),
        "zero seconds": ([str(good), "--seconds", "0"], "--seconds"),
        "too long": ([str(good), "--seconds", "31"], "30"),
        "not an export": ([str(good), "--model", str(tmp_path)], "not a STAR export"),
        "stage 1": ([str(good), "--model", str(stage1 / "export")], "stage-1"),
    }
    for name, (args, words) in cases.items():
        out = tmp_path / f"out_{name.replace(' ', '_')}.wav"
        model = [] if "--model" in args else ["--model", str(stage2 / "export")]
        capsys.readouterr()
        rc = main(["speak-to-audio", *args, "-o", str(out), *model])
        err = capsys.readouterr().err.strip().splitlines()
        err = [e for e in err if not e.startswith("usage:")]
        assert rc != 0 and len(err) == 1 and err[0].startswith("hasrd: error:") and words in err[0], (name, err)
        assert not out.exists(), name


def test_the_prompt_check_accepts_speech_and_refuses_the_rest():
    assert check_prompt(speechlike(1.0)[0, 0].numpy(), SR).voiced_fraction > 0.5
    assert check_prompt(prompt_wave("rain", 2), SR)  # the tests' other voice
    rng = np.random.default_rng(0)
    for x, words in ((np.zeros(0), "empty"), (np.zeros(SR), "silent"), (1e-4 * rng.standard_normal(SR), "silent"),
                     (np.r_[np.zeros(SR), 0.5 * np.ones(800), np.zeros(SR)], "silent"),
                     (_tone(), "speech"), (0.3 * rng.standard_normal(SR), "speech")):
        with pytest.raises(ValueError, match=words) as e:
            check_prompt(x, SR)
        assert "\n" not in str(e.value)
