"""Speech enhancement in the evaluator: noisy/clean manifests, the input row, spectral gating,
``--enhancer`` systems and the gains tables (fake enhancers; no judge models load)."""
import csv
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hasrd.eval import main
from hasrd.eval.data import DEFAULT_EVAL_DIR
from hasrd.io.audio import load_audio, resample
from tests.conftest import speechlike

SR = 16000
# Real speech (the two shortest clips of the bundled set): spectral gating estimates the noise in
# the pauses, which a synthetic voiced signal does not have.
CLEAN = {"utt1": "cmu_cards_003", "utt2": "cmu_cards_001"}
FAST = ["--asr", "none", "--speaker", "none", "--mos", "none", "--no-probes", "--jobs", "1", "--no-progress"]


def _add_noise(clean: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    scale = math.sqrt(np.mean(clean ** 2) / (np.mean(noise ** 2) * 10 ** (snr_db / 10)))
    return (clean + scale * noise).astype(np.float32)


def clean_audio(utt: str) -> np.ndarray:
    return load_audio(DEFAULT_EVAL_DIR / f"{CLEAN[utt]}.wav", sample_rate=SR)[0][0]


def make_noisy_set(root, pairs=(("utt1", 0), ("utt1", 5), ("utt2", 5))) -> Path:
    """clean/UTT.wav (real speech) and noisy/UTT_snrN.wav (plus white noise at N dB), and a
    JSONL manifest ``noisy.jsonl`` with relative paths; returns the manifest."""
    (root / "clean").mkdir(parents=True, exist_ok=True)
    (root / "noisy").mkdir(exist_ok=True)
    lines = []
    for i, (utt, snr) in enumerate(pairs):
        clean = clean_audio(utt)
        sf.write(root / "clean" / f"{utt}.wav", clean, SR, subtype="FLOAT")
        noisy = _add_noise(clean, snr, seed=100 + i)
        sf.write(root / "noisy" / f"{utt}_snr{snr}.wav", noisy, SR, subtype="FLOAT")
        lines.append(json.dumps({"path": f"clean/{utt}.wav", "noisy": f"noisy/{utt}_snr{snr}.wav", "snr": snr,
                                 "noise": "white", "text": "ten of clubs"}))
    manifest = root / "noisy.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


class FakeEnhancer:
    """The ``hasrd.enhance`` enhancer interface: halves its input (at 24 kHz, to exercise resampling)."""

    def __init__(self, name: str, form: str, bitrate: float, sample_rate: int = 24000):
        self.name, self.form, self.bitrate, self.sample_rate = name, form, bitrate, sample_rate
        self.shapes = []

    def enhance(self, wav):
        self.shapes.append(tuple(wav.shape))
        return 0.5 * wav


def fake_enhance_module(made: dict) -> types.ModuleType:
    """A stand-in ``hasrd.enhance``: folder ``cont*`` -> continuous at 16 kHz, ``tok*`` -> tokens
    at 1.5 kbit/s and 24 kHz."""
    def load_enhancer(path):
        name = str(path).rstrip("/").split("/")[-1]
        if name.startswith("cont"):
            enh = FakeEnhancer("se-continuous", "continuous", 0.0, sample_rate=16000)
        elif name.startswith("tok"):
            enh = FakeEnhancer("se-tokens", "tokens", 1500.0)
        else:
            raise FileNotFoundError(f"{path}: no enhancer export here")
        made[name] = enh
        return enh

    mod = types.ModuleType("hasrd.enhance")
    mod.load_enhancer = load_enhancer
    return mod


def _rows(out):
    with open(out / "per_file.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def se_run(tmp_path_factory):
    """One evaluation of the noisy set: input, reference, two fake enhancers, spectral gating."""
    root = tmp_path_factory.mktemp("se")
    manifest = make_noisy_set(root / "data")
    out = root / "out"
    made: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "hasrd.enhance", fake_enhance_module(made))
        code = main(["--data", str(manifest), "--enhancer", str(root / "cont"), "--enhancer", str(root / "tok"),
                     "--baselines", "spectral-gating", *FAST, "--output", str(out)])
    assert code == 0
    return {"out": out, "made": made, "rows": _rows(out),
            "summary": json.loads((out / "summary.json").read_text()), "md": (out / "summary.md").read_text()}


# ---- the data -----------------------------------------------------------------------------------


def test_noisy_manifest_loads_pairs_with_unique_ids(tmp_path):
    from hasrd.eval.data import load_eval_set

    manifest = make_noisy_set(tmp_path)
    utts = load_eval_set(manifest)
    assert [u.id for u in utts] == ["utt1_snr0", "utt1_snr5", "utt2_snr5"]  # one clean file, two noisy versions
    u0, u1 = utts[0], utts[1]
    assert u0.path == u1.path == tmp_path / "clean" / "utt1.wav"
    assert u0.input_path == tmp_path / "noisy" / "utt1_snr0.wav"
    assert u0.extra == {"snr": 0, "noise": "white"} and u0.text == "ten of clubs"
    assert u0.input.dtype == np.float32 and u0.input.shape == u0.audio.shape == clean_audio("utt1").shape
    np.testing.assert_array_equal(u0.audio, u1.audio)
    assert not np.array_equal(u0.input, u1.input)
    snr = 10 * np.log10(np.sum(u1.audio ** 2) / np.sum((u1.input - u1.audio) ** 2))
    assert snr == pytest.approx(5.0, abs=0.1)


def test_clean_sets_have_no_input(clips_dir):
    from hasrd.eval.data import load_eval_set
    from hasrd.eval.run import EvalOptions, build_systems

    assert all(u.input is None and u.input_path is None for u in load_eval_set(clips_dir))
    systems, _, _ = build_systems(EvalOptions(output="unused"))
    assert [s.name for s in systems] == ["reference"]
    systems, _, _ = build_systems(EvalOptions(output="unused"), noisy=True)
    assert [(s.name, s.kind, s.family) for s in systems] == [("input", "input", "input"),
                                                             ("reference", "reference", "reference")]


def test_length_mismatch_is_a_clear_error(tmp_path, capsys):
    from hasrd.eval.data import load_eval_set

    manifest = make_noisy_set(tmp_path, pairs=(("utt1", 5),))
    n = clean_audio("utt1").size
    sf.write(tmp_path / "noisy" / "utt1_snr5.wav", np.zeros(n - 160, np.float32), SR)
    with pytest.raises(ValueError, match=rf"utt1_snr5\.wav: {n - 160} samples .* has {n}"):
        load_eval_set(manifest)
    assert main(["--data", str(manifest), *FAST, "--output", str(tmp_path / "o")]) == 2
    assert "error: --data:" in capsys.readouterr().err


# ---- the systems --------------------------------------------------------------------------------


def test_spectral_gating_specs():
    from hasrd.eval.systems import SpectralGatingSystem, parse_baseline

    s = parse_baseline("spectral-gating")
    assert isinstance(s, SpectralGatingSystem) and not s.stationary
    assert (s.name, s.family, s.kind, s.bitrate_nominal) == ("spectral-gating", "spectral-gating", "enhancer", 256000)
    s = parse_baseline("spectral-gating:stationary")
    assert s.stationary and s.name == "spectral-gating:stationary" and s.family == "spectral-gating"
    x = _add_noise(speechlike(0.5, SR).numpy().reshape(-1), 5, seed=0)
    y, payload = s.process(x, SR)
    assert y.shape == x.shape and y.dtype == np.float32 and payload == 2 * x.size
    with pytest.raises(ValueError, match="spectral-gating:stationary"):
        parse_baseline("spectral-gating:wiener")


def test_enhancer_system_resamples_and_counts_bits():
    from hasrd.eval.systems import EnhancerSystem

    enh = FakeEnhancer("se-tokens", "tokens", 1500.0, sample_rate=24000)
    s = EnhancerSystem(enh)
    assert (s.name, s.kind, s.family, s.bitrate_nominal) == ("se-tokens", "enhancer", "enhance-tokens", 1500.0)
    x = speechlike(1.0, SR).numpy().reshape(-1)
    y, payload = s.process(x, SR)
    assert enh.shapes == [(1, 1, 24000)]
    assert y.shape == x.shape and payload == 188  # ceil(1500 bit/s * 1 s / 8)
    np.testing.assert_allclose(y, 0.5 * x, atol=2e-3)  # 16 -> 24 -> 16 kHz round trip
    with pytest.raises(ValueError, match="form"):
        EnhancerSystem(FakeEnhancer("x", "spectrogram", 0.0))


def test_enhancer_load_failures_are_errors(tmp_path, monkeypatch, capsys):
    manifest = make_noisy_set(tmp_path, pairs=(("utt1", 5),))
    monkeypatch.setitem(sys.modules, "hasrd.enhance", fake_enhance_module({}))
    assert main(["--data", str(manifest), "--enhancer", str(tmp_path / "nope"), *FAST,
                 "--output", str(tmp_path / "o")]) == 2
    nope = tmp_path / "nope"
    assert f"error: --enhancer {nope}: {nope}: no enhancer export here" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "hasrd.enhance", None)  # the package not there at all
    assert main(["--data", str(manifest), "--enhancer", str(tmp_path / "cont"), *FAST,
                 "--output", str(tmp_path / "o")]) == 2
    assert "hasrd.enhance cannot be imported" in capsys.readouterr().err


def test_spectral_gating_without_noisereduce_is_a_skip_line(tmp_path, monkeypatch, capsys):
    manifest = make_noisy_set(tmp_path, pairs=(("utt1", 5),))
    monkeypatch.setitem(sys.modules, "noisereduce", None)  # import noisereduce -> ImportError
    out = tmp_path / "out"
    assert main(["--data", str(manifest), "--baselines", "spectral-gating", *FAST, "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("skip spectral-gating: package noisereduce not installed (pip install noisereduce)") == 1
    assert [r["system"] for r in _rows(out)] == ["input", "reference"]
    assert "skip spectral-gating" in (out / "summary.md").read_text()


# ---- one run: rows, gains, files --------------------------------------------------------------------


def test_rows_of_an_enhancement_run(se_run):
    rows = se_run["rows"]
    systems = ["input", "reference", "se-continuous", "se-tokens", "spectral-gating"]
    assert [r["system"] for r in rows[:5]] == systems and len(rows) == 3 * len(systems)
    assert not any(r["error"] for r in rows)
    assert len({(r["utt"], r["system"]) for r in rows}) == len(rows)
    assert {r["utt"] for r in rows} == {"utt1_snr0", "utt1_snr5", "utt2_snr5"}
    assert {(r["utt"], r["snr"], r["noise"]) for r in rows if r["system"] == "input"} == {
        ("utt1_snr0", "0", "white"), ("utt1_snr5", "5", "white"), ("utt2_snr5", "5", "white")}
    fam = {r["system"]: (r["family"], r["kind"]) for r in rows}
    assert fam["se-continuous"] == ("enhance-continuous", "enhancer")
    assert fam["se-tokens"] == ("enhance-tokens", "enhancer")
    assert fam["spectral-gating"] == ("spectral-gating", "enhancer") and fam["input"] == ("input", "input")
    made = se_run["made"]
    lengths = [clean_audio(u).size for u in ("utt1", "utt1", "utt2")]
    assert made["cont"].shapes == [(1, 1, n) for n in lengths]
    assert made["tok"].shapes == [(1, 1, resample(np.zeros(n, np.float32), SR, 24000).size) for n in lengths]

    by = {s["name"]: s for s in se_run["summary"]["systems"]}
    inp, ref = by["input"], by["reference"]
    assert ref["pesq_wb"]["mean"] == pytest.approx(4.64, abs=0.01) and ref["stoi"]["mean"] == pytest.approx(1.0)
    assert inp["pesq_wb"]["mean"] < ref["pesq_wb"]["mean"] - 1 and inp["stoi"]["mean"] < ref["stoi"]["mean"] - 0.05
    assert inp["si_sdr"]["mean"] == pytest.approx(10 / 3, abs=0.2)  # the noisy input: (0 + 5 + 5) / 3 dB
    assert inp["kbps_measured"] == pytest.approx(256) and by["se-continuous"]["kbps_nominal"] == 0
    assert by["se-tokens"]["kbps_measured"] == pytest.approx(1.5, abs=0.01)
    assert se_run["summary"]["utterances"][0]["input"].endswith("utt1_snr0.wav")


def test_gains_over_the_input(se_run):
    rows, out = se_run["rows"], se_run["out"]
    gains = {g["system"]: g for g in se_run["summary"]["enhancement_gains"]}
    assert list(gains) == ["se-continuous", "se-tokens", "spectral-gating"]  # no input, no reference

    def per_utt(system, key):
        return {r["utt"]: float(r[key]) for r in rows if r["system"] == system}

    inp_stoi, sg_stoi = per_utt("input", "stoi"), per_utt("spectral-gating", "stoi")
    delta = np.mean([sg_stoi[u] - inp_stoi[u] for u in inp_stoi])
    g = gains["spectral-gating"]
    assert g["stoi_delta"] == pytest.approx(delta, abs=1e-9) and g["stoi_n"] == 3
    assert g["stoi_input"] == pytest.approx(np.mean(list(inp_stoi.values())))
    assert g["stoi"] - g["stoi_input"] == pytest.approx(g["stoi_delta"], abs=1e-9)
    # spectral gating removes white noise at 0-5 dB SNR: SI-SDR up on every utterance
    inp_sdr, sg_sdr = per_utt("input", "si_sdr"), per_utt("spectral-gating", "si_sdr")
    assert all(sg_sdr[u] > inp_sdr[u] + 0.5 for u in inp_sdr) and g["si_sdr_delta"] > 1.0
    assert gains["se-continuous"]["si_sdr_delta"] == pytest.approx(0.0, abs=1e-3)  # halving: scale-invariant
    assert g["dnsmos_ovrl_n"] == 0 and g["dnsmos_ovrl"] is None  # --mos none

    md = se_run["md"]
    section = md.split("## Enhancement gains over the noisy input")[1]
    table = [line for line in section.splitlines() if line.startswith("| spectral-gating |")]
    assert f"| {g['stoi']:.3f} | {g['stoi_delta']:+.3f} ± {g['stoi_delta_ci95']:.3f} |" in table[0]
    assert "DNSMOS" not in section.split("By input SNR")[0]  # no MOS judge: no empty column

    by_snr = se_run["summary"]["enhancement_by_snr"]
    picked = [(r["system"], r["snr"], r["utterances"]) for r in by_snr if r["system"] in ("input", "spectral-gating")]
    assert picked == [("input", 0, 1), ("input", 5, 2), ("spectral-gating", 0, 1), ("spectral-gating", 5, 2)]
    sg5 = next(r for r in by_snr if r["system"] == "spectral-gating" and r["snr"] == 5)
    d5 = np.mean([sg_stoi[u] - inp_stoi[u] for u in ("utt1_snr5", "utt2_snr5")])
    assert sg5["stoi_delta"] == pytest.approx(d5, abs=1e-9)
    assert not any(r["system"] == "reference" for r in by_snr)
    assert "| spectral-gating | 5 | 2 |" in section

    with open(out / "enhancement_gains.csv") as fh:
        csv_rows = {r["system"]: r for r in csv.DictReader(fh)}
    assert float(csv_rows["spectral-gating"]["stoi_delta"]) == pytest.approx(g["stoi_delta"])
    assert csv_rows["spectral-gating"]["dnsmos_ovrl"] == ""
    with open(out / "enhancement_by_snr.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(by_snr) == 4 * 2
    assert (out / "plots.png").read_bytes()[:4] == b"\x89PNG"


def test_clean_run_has_no_gains_section(clips_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["--data", str(clips_dir), "--limit", "1", *FAST, "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["enhancement_gains"] == [] and summary["enhancement_by_snr"] == []
    assert "Enhancement gains" not in (out / "summary.md").read_text()
    assert not (out / "enhancement_gains.csv").exists()
    assert [r["system"] for r in _rows(out)] == ["reference"]
