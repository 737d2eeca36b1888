import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hasrd.eval import main

ROOT = Path(__file__).resolve().parents[2]


def _rows(out):
    with open(out / "per_file.csv") as fh:
        return list(csv.DictReader(fh))


def test_full_report_on_tiny_model(tmp_path, clips_dir, tiny_model_dir, capsys):
    out = tmp_path / "out"
    code = main(["--model", str(tiny_model_dir), "--data", str(clips_dir), "--n-q", "1,4,8", "--jobs", "2", "--no-progress", "--save-audio", "--output", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "skip hasrd:tiny@nq8: the model has 4 codebooks" in captured.err
    for name in ("per_file.csv", "per_file.json", "summary.csv", "summary.json", "summary.md", "probes.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "plots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "audio").rglob("*.wav"))) == len(_rows(out))

    rows = _rows(out)
    systems = ["reference", "hasrd:tiny@nq1", "hasrd:tiny@nq4"]
    assert sorted({r["system"] for r in rows}) == sorted(systems)
    assert len(rows) == 2 * len(systems)

    summary = json.loads((out / "summary.json").read_text())
    by = {s["name"]: s for s in summary["systems"]}
    ref = by["reference"]
    assert ref["pesq_wb"]["mean"] == pytest.approx(4.64, abs=0.01)
    assert ref["stoi"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert ref["delay_ms_median"] == 0
    assert ref["wer"]["rate"] is not None
    if importlib.util.find_spec("resemblyzer") is not None:  # optional judge
        assert ref["spk_sim"]["mean"] == pytest.approx(1.0, abs=1e-6)
    else:
        assert "skip judge speaker=resemblyzer" in captured.err
    assert by["hasrd:tiny@nq1"]["kbps_nominal"] == pytest.approx(0.3)
    assert by["hasrd:tiny@nq4"]["kbps_measured"] > by["hasrd:tiny@nq1"]["kbps_measured"]
    assert by["hasrd:tiny@nq1"]["dnsmos_ovrl"]["n"] == 2

    probes = summary["probes"]["hasrd:tiny"]
    assert [c["codebook"] for c in probes["codebooks"]] == [1, 2, 3, 4]
    assert probes["aligned_utterances"] == 2
    assert 0 <= probes["codebooks"][0]["pnmi"] <= 1
    md = (out / "summary.md").read_text()
    assert "| reference |" in md and "Semantic/acoustic disentanglement" in md and "## Skipped" in md
    assert "| reference |" in captured.out  # the table is printed too


@pytest.mark.parametrize("extra,message", [
    (["--output", "FILE"], "exists and is not a folder"),
    (["--max-delay-ms", "-5"], "--max-delay-ms -5"),
    (["--max-delay-ms", "nan"], "--max-delay-ms nan"),
    (["--n-q", "99"], "no row to score"),
    (["--limit", "-1"], "--limit -1"),
    (["--transcripts", "MISSING"], "--transcripts"),
])
def test_options_that_cannot_score_are_refused_before_any_work(tmp_path, clips_dir, tiny_model_dir, capsys,
                                                               extra, message):
    blocker = tmp_path / "FILE"
    blocker.write_text("kept")
    extra = [str(blocker) if e == "FILE" else str(tmp_path / "none.tsv") if e == "MISSING" else e for e in extra]
    argv = ["--model", str(tiny_model_dir), "--data", str(clips_dir), "--no-progress", "--asr", "none",
            "--speaker", "none", "--mos", "none", "--no-probes"]
    if "--output" not in extra:
        extra += ["--output", str(tmp_path / "out")]
    assert main(argv + extra) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert message in err[-1]
    assert blocker.read_text() == "kept" and not (tmp_path / "out").exists()


def test_missing_tools_and_weights_are_skip_lines(tmp_path, clips_dir, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # hide every command-line codec
    out = tmp_path / "out"
    code = main(["--data", str(clips_dir), "--baselines", "codec2:1200,opus:6000,encodec:1500",
                 "--asr", "none", "--speaker", "none", "--mos", "none", "--jobs", "1", "--no-progress",
                 "--output", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("skip codec2:1200: tool c2enc, c2dec not found on PATH") == 1
    assert "skip opus:6000: tool opusenc, opusdec not found on PATH" in err
    assert err.count("skip encodec:1500") == 1
    rows = _rows(out)
    assert [r["system"] for r in rows] == ["reference", "reference"]
    assert all(float(r["pesq_wb"]) > 4.6 for r in rows)
    md = (out / "summary.md").read_text()
    assert "skip opus:6000" in md and "WER" not in md.split("## Skipped")[0].split("\n| system")[1].split("\n")[0]


def test_data_forms(clips_dir):
    from hasrd.eval.data import DEFAULT_EVAL_DIR, load_eval_set

    bundled = load_eval_set()
    assert len(bundled) == 13 and all(u.text for u in bundled)
    assert sum(u.duration for u in bundled) == pytest.approx(51.0, abs=0.1)
    manifest = load_eval_set(DEFAULT_EVAL_DIR / "transcripts.tsv", limit=2)
    assert [u.id for u in manifest] == ["cmu_cards_001", "cmu_cards_002"] and manifest[0].text == "ten of clubs"
    one = load_eval_set(clips_dir / "cmu_cards_003.wav", transcripts=clips_dir / "transcripts.tsv")
    assert len(one) == 1 and one[0].text == "seven of clubs" and one[0].audio.dtype.name == "float32"


def test_missing_model_and_bad_spec_are_errors(tmp_path, clips_dir, capsys):
    assert main(["--model", str(tmp_path / "nope"), "--data", str(clips_dir), "--output", str(tmp_path / "o")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(["--baselines", "mp3:128k", "--data", str(clips_dir), "--output", str(tmp_path / "o")]) == 2
    assert "unknown baseline kind" in capsys.readouterr().err


def test_mos_hook_and_missing_judge_folder(tmp_path, clips_dir, capsys):
    hook = tmp_path / "myhook.py"
    hook.write_text("import numpy as np\ndef score(audio, sr):\n    return float(np.abs(audio).max()) + sr / 16000\n")
    out = tmp_path / "out"
    code = main(["--data", str(clips_dir), "--limit", "1", "--asr", str(tmp_path / "no-whisper"), "--speaker", "none",
                 "--mos", "none", "--mos-hook", f"{hook}:score", "--jobs", "1", "--no-progress", "--output", str(out)])
    assert code == 0
    assert "skip judge asr=" in capsys.readouterr().err
    row = _rows(out)[0]
    assert 1.0 < float(row["mos_hook"]) <= 2.0 and row["wer"] == ""


def test_import_is_light_and_evaluate_py_runs():
    code = ("import sys, runpy, hasrd.eval\n"
            "heavy = ['pesq', 'pystoi', 'speechmos', 'pocketsphinx', 'resemblyzer', 'matplotlib', 'librosa', 'onnxruntime']\n"
            "print('loaded:', [m for m in heavy if m in sys.modules])\n"
            "sys.argv = ['evaluate.py', '--help']\n"
            "runpy.run_path('evaluate.py', run_name='__main__')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "loaded: []" in res.stdout
    assert "--baselines" in res.stdout and "--n-q" in res.stdout
