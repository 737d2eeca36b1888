"""scripts/compare_evals.py: paired per-utterance comparison of two evaluate.py runs."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.stats import t

from tests.scripts import load_script

ce = load_script("compare_evals")

FIELDS = ("utt", "system", "family", "kind", "n_q", "pesq_wb", "dnsmos_ovrl", "error")


def write_run(folder, rows):
    folder.mkdir(parents=True)
    with open(folder / "per_file.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    return str(folder)


def codec_rows(model, n_q, pesq, dnsmos=None, utts=None):
    utts = utts or [f"u{i}" for i in range(len(pesq))]
    return [{"utt": u, "system": f"{model}@nq{n_q}", "family": model, "kind": "hasrd", "n_q": n_q,
             "pesq_wb": p, "dnsmos_ovrl": "" if dnsmos is None else dnsmos[i]}
            for i, (u, p) in enumerate(zip(utts, pesq))]


def test_pairs_by_utterance_and_matches_models_by_n_q(tmp_path):
    base_p = [1.0, 1.5, 2.0, 1.2]
    cand_p = [1.2, 1.4, 2.3, 1.6]
    ref = [{"utt": f"u{i}", "system": "reference", "family": "reference", "kind": "reference", "pesq_wb": 4.5}
           for i in range(4)]
    c2 = [{"utt": f"u{i}", "system": "codec2:3200", "family": "codec2", "kind": "codec2", "pesq_wb": 1.6}
          for i in range(4)]
    a = write_run(tmp_path / "a", ref + c2 + codec_rows("hasrd:default", 3, base_p))
    b = write_run(tmp_path / "b", ref + c2 + codec_rows("hasrd:export", 3, cand_p))
    rows = ce.compare(ce.read_rows(a), ce.read_rows(b), ["pesq_wb"])
    by = {r["system"]: r for r in rows}
    assert set(by) == {"hasrd @nq3", "codec2:3200"}  # the reference is not a system to compare
    d = np.subtract(cand_p, base_p)
    r = by["hasrd @nq3"]
    assert r["n"] == 4 and r["lower"] == 1
    assert r["base"] == pytest.approx(np.mean(base_p)) and r["candidate"] == pytest.approx(np.mean(cand_p))
    assert r["delta"] == pytest.approx(d.mean())
    assert r["ci95"] == pytest.approx(t.ppf(0.975, 3) * d.std(ddof=1) / 2)
    assert by["codec2:3200"]["delta"] == pytest.approx(0.0) and by["codec2:3200"]["lower"] == 0


def test_only_shared_utterances_and_finite_values_count(tmp_path):
    a = write_run(tmp_path / "a", codec_rows("hasrd:a", 6, [1.0, 2.0, 3.0], dnsmos=[2.0, 2.5, 3.0],
                                             utts=["x", "y", "z"]))
    b = write_run(tmp_path / "b", codec_rows("hasrd:b", 6, [1.5, 2.5, 9.0], dnsmos=[2.2, "nan", 3.1],
                                             utts=["x", "y", "w"]))
    rows = {r["metric"]: r for r in ce.compare(ce.read_rows(a), ce.read_rows(b), ["pesq_wb", "dnsmos_ovrl"])}
    assert rows["pesq_wb"]["n"] == 2 and rows["pesq_wb"]["delta"] == pytest.approx(0.5)
    assert rows["dnsmos_ovrl"]["n"] == 1 and rows["dnsmos_ovrl"]["delta"] == pytest.approx(0.2)


def test_failed_rows_are_left_out(tmp_path):
    rows = codec_rows("hasrd:a", 3, [1.0, 2.0])
    rows[1]["error"] = "decode failed"
    a = write_run(tmp_path / "a", rows)
    b = write_run(tmp_path / "b", codec_rows("hasrd:b", 3, [1.5, 2.5]))
    (r,) = ce.compare(ce.read_rows(a), ce.read_rows(b), ["pesq_wb"])
    assert r["n"] == 1 and r["delta"] == pytest.approx(0.5)


def test_several_models_need_a_choice(tmp_path):
    a = write_run(tmp_path / "a", codec_rows("hasrd:one", 3, [1.0, 1.0]) + codec_rows("hasrd:two", 3, [2.0, 2.0]))
    b = write_run(tmp_path / "b", codec_rows("hasrd:new", 3, [1.5, 1.5]))
    with pytest.raises(ValueError, match="several hasrd models"):
        ce.compare(ce.read_rows(a), ce.read_rows(b), ["pesq_wb"])
    (r,) = ce.compare(ce.read_rows(a), ce.read_rows(b), ["pesq_wb"], base_model="hasrd:two")
    assert r["base"] == pytest.approx(2.0) and r["delta"] == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="no hasrd model 'hasrd:three'"):
        ce.compare(ce.read_rows(a), ce.read_rows(b), ["pesq_wb"], base_model="hasrd:three")


def test_cli_prints_a_table(tmp_path, capsys):
    a = write_run(tmp_path / "a", codec_rows("hasrd:a", 3, [1.0, 2.0]))
    b = write_run(tmp_path / "b", codec_rows("hasrd:b", 3, [1.5, 2.0]))
    assert ce.main([a, b, "--metrics", "pesq_wb"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| system | metric |")
    assert out[2] == "| hasrd @nq3 | pesq_wb | 2 | 1.500 | 1.750 | +0.250 ± 3.177 | 0 |"


@pytest.mark.parametrize("case, message", [
    ("missing", "no per_file.csv"),
    ("no_common_system", "no system in common"),
    ("no_metric", "is measured in both runs"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, case, message):
    a = write_run(tmp_path / "a", codec_rows("hasrd:a", 3, [1.0, 2.0]))
    if case == "missing":
        b, extra = str(tmp_path / "nowhere"), []
    elif case == "no_common_system":
        b, extra = write_run(tmp_path / "b", codec_rows("hasrd:b", 6, [1.0, 2.0])), []
    else:
        b, extra = write_run(tmp_path / "b", codec_rows("hasrd:b", 3, [1.0, 2.0])), ["--metrics", "stoi"]
    assert ce.main([a, b, *extra]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.count("\n") == 1 and cap.err.startswith("compare_evals: error:") and message in cap.err
