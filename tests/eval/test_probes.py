import importlib.util

import numpy as np
import pytest

from hasrd.eval.probes import codebook_probe, frame_labels, phone_alignment, pnmi_purity


def test_pnmi_perfect_and_independent():
    phones = ["AA", "B", "K", "AA", "B", "K"] * 50
    codes = [{"AA": 3, "B": 7, "K": 1}[p] for p in phones]
    r = pnmi_purity(phones, codes)
    assert r["pnmi"] == pytest.approx(1.0) and r["purity"] == pytest.approx(1.0)
    const = pnmi_purity(phones, [0] * len(phones))
    assert const["pnmi"] == pytest.approx(0.0) and const["purity"] == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    rand = pnmi_purity(phones * 20, list(rng.integers(0, 4, len(phones) * 20)))
    assert rand["pnmi"] < 0.01


def test_frame_labels_use_frame_centres():
    segs = [("SIL", 0.0, 0.1), ("HH", 0.1, 0.15), ("IY", 0.15, 0.3)]
    # 20 Hz frames: centres at 0.025, 0.075, 0.125, 0.175, 0.225, 0.275, 0.325
    assert frame_labels(segs, 7, 20.0) == ["SIL", "SIL", "HH", "IY", "IY", "IY", None]


def test_codebook_probe_shapes():
    codes = np.array([[0, 1, 0, 1], [5, 5, 6, 6]])
    rows = codebook_probe([(codes, ["A", "B", "A", "SIL"])])
    assert [r["codebook"] for r in rows] == [1, 2]
    assert rows[0]["frames"] == 3  # the silence frame is left out
    assert rows[0]["pnmi"] == pytest.approx(1.0)


@pytest.mark.skipif(importlib.util.find_spec("pocketsphinx") is None, reason="pocketsphinx not installed")
def test_forced_alignment_of_real_speech():
    from hasrd.eval.data import load_eval_set
    from hasrd.eval.probes import AlignmentError

    utt = next(u for u in load_eval_set() if u.id == "cmu_goforward")
    segs = phone_alignment(utt.audio, utt.text)
    names = [p for p, _, _ in segs if p != "SIL"]
    assert names[:2] == ["G", "OW"] and "M" in names
    assert all(a < b for _, a, b in segs) and segs[-1][2] <= utt.duration + 0.05
    with pytest.raises(AlignmentError):
        phone_alignment(utt.audio, "qqzzx forward")
