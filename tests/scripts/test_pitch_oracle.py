"""scripts/pitch_oracle.py: the F0 quantiser and the command line on a tiny manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import speechlike
from tests.scripts import load_script


def test_f0_quantisation_keeps_within_half_a_step():
    po = load_script("pitch_oracle")
    f0 = np.array([60.0, 97.3, 150.0, 311.1, 450.0])
    q = po.quantise_f0(f0, 7)
    assert np.max(np.abs(1200 * np.log2(q / f0))) <= 14.0
    assert np.array_equal(po.quantise_f0(f0, 0), f0)


def test_the_table_scores_the_resynthesis(tmp_path, capsys):
    po = load_script("pitch_oracle")
    rows = []
    for i in range(2):
        sf.write(tmp_path / f"u{i}.wav", speechlike(1.0, seed=i).numpy()[0, 0], 16000)
        rows.append({"path": f"u{i}.wav"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert po.main(["--data", str(tmp_path / "m.jsonl"), "--limit", "2", "--f0-bits", "0,7", "--n-fft", "512",
                    "--json", str(tmp_path / "o.json")]) == 0
    table = capsys.readouterr().out
    assert "| hasrd | 320 | 32 | exact |" in table and "| hasrd | 320 | 32 | 7 |" in table
    scores = json.loads((tmp_path / "o.json").read_text())
    assert len(scores) == 2 and all(0.5 < r["stoi"] <= 1.0 and r["n"] == 2 for r in scores)


def test_each_envelope_codebook_stage_lowers_the_quantisation_error():
    po = load_script("pitch_oracle")
    rng = np.random.default_rng(0)
    # log envelopes with structure (a few spectral shapes at random levels) plus noise
    shapes = rng.normal(size=(6, 16))
    feats = shapes[rng.integers(0, 6, 2000)] + rng.normal(scale=0.5, size=(2000, 1)) + 0.1 * rng.normal(size=(2000, 16))
    books = po.train_envelope_vq(feats, stages=3, size=32, iters=10)
    errors = [np.mean((np.log(po.quantise_envelope(feats, books[:k])) - feats) ** 2) for k in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.5 * errors[0], errors


def test_the_envelope_codebook_rows_need_training_data(tmp_path, capsys):
    po = load_script("pitch_oracle")
    sf.write(tmp_path / "u.wav", speechlike(1.0).numpy()[0, 0], 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "u.wav"}) + "\n")
    with pytest.raises(SystemExit):
        po.main(["--data", str(tmp_path / "m.jsonl"), "--vq-stages", "0,1"])
    assert "--vq-train" in capsys.readouterr().err
    assert po.main(["--data", str(tmp_path / "m.jsonl"), "--vq-stages", "0,2", "--vq-size", "8", "--vq-iters", "3",
                    "--vq-train", str(tmp_path / "m.jsonl"), "--n-fft", "512", "--json", str(tmp_path / "o.json")]) == 0
    rows = json.loads((tmp_path / "o.json").read_text())
    assert [r["vq_stages"] for r in rows] == [0, 2] and rows[1]["envelope_bit_s"] == 2 * 3 * 50
