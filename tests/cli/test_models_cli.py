"""``hasrd models``: every built-in model with its kind, size, rates and the doc of its
measurements, answered without torch."""
from __future__ import annotations

import json
import subprocess
import sys

from safetensors import safe_open

from hasrd.cli import main
from hasrd.codecs import BUILTIN_MODELS, PRETRAINED_DIR, load_codec

from .conftest import ROOT


def test_models_lists_every_builtin_model_with_size_rates_and_doc(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(BUILTIN_MODELS)
    for r in rows:
        folder = PRETRAINED_DIR / r["name"]
        assert r["bytes"] == sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        assert (ROOT / r["doc"]).is_file(), r["doc"]
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            assert r["weights"] == sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    codec = load_codec("pitch")
    pitch = next(r for r in rows if r["name"] == "pitch")
    assert pitch["kind"] == "codec" and pitch["sample_rate"] == codec.sample_rate
    assert pitch["kbps"] == [round(codec.bitrate(n) / 1000, 3) for n in range(1, codec.num_codebooks + 1)]
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in BUILTIN_MODELS) and "docs/pitch.md" in table


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def test_models_does_not_import_torch():
    code = ("import sys; from hasrd.cli import main; rc = main(['models']); "
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
