"""scripts/pitch_oracle.py: the F0 quantiser and the command line on a tiny manifest."""
from __future__ import annotations

import json

import numpy as np
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
