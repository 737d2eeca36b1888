"""The built-in index (hasrd/pretrained/builtin_index.json): equal to what the shipped models say,
append-only, and read without torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hasrd.io import modelindex
from tests.conftest import ROOT
from tests.scripts import load_script


@pytest.fixture(scope="module")
def installed():
    """Each installed built-in model's entry, from the loaded model (what the script records)."""
    return load_script("make_builtin_index").current_entries()


def test_index_matches_the_shipped_models(installed):
    from hasrd.codecs import BUILTIN_MODELS, PRETRAINED_DIR

    assert modelindex.INDEX_PATH == PRETRAINED_DIR / "builtin_index.json"
    assert [e["name"] for e in installed] == list(BUILTIN_MODELS)  # every built-in model is shipped
    current = [e for e in modelindex.entries() if e["current"]]
    assert current == installed, "the built-in models changed: run scripts/make_builtin_index.py"
    # the file is what the script writes (one model a line, retired entries kept)
    script = load_script("make_builtin_index")
    previous = json.loads(modelindex.INDEX_PATH.read_text())
    assert modelindex.INDEX_PATH.read_text() == script.render(modelindex.merged_index(installed, previous))


def test_lookups(installed):
    for e in installed:
        assert modelindex.by_prefix(e["fingerprint"][:8]) == e
        assert modelindex.by_fingerprint(e["fingerprint"]) == e
        assert modelindex.builtin_name(e["codec"], e["fingerprint"]) == e["name"]
        assert modelindex.builtin_name("other-codec", e["fingerprint"]) is None
    assert modelindex.by_prefix("00000000") is None and modelindex.builtin_name("hasrd", "0" * 16) is None


def test_merged_index_keeps_retired_models_and_refuses_shared_prefixes(tmp_path, installed):
    old = dict(installed[0], fingerprint="ffffffff00000000", name="default")
    index = modelindex.merged_index(installed, {"models": [old, *installed]})
    assert index["models"][: len(installed)] == installed
    assert index["models"][len(installed):] == [dict(old, current=False)]  # kept, no longer current
    path = tmp_path / "index.json"
    path.write_text(json.dumps(index))
    assert modelindex.by_prefix("ffffffff", path)["current"] is False  # its files stay readable
    assert modelindex.builtin_name(old["codec"], old["fingerprint"], path) is None  # but it is not installed
    clash = dict(installed[0], fingerprint=installed[1]["fingerprint"][:8] + "0" * 8, name="clash")
    with pytest.raises(modelindex.BuiltinIndexError, match="share the fingerprint prefix"):
        modelindex.merged_index(installed + [clash], None)
    assert modelindex.entries(tmp_path / "missing.json") == ()  # no index: every file describes its model


def test_index_is_read_without_torch(installed):
    code = ("import sys; from hasrd.io import modelindex; "
            f"assert modelindex.builtin_name({installed[0]['codec']!r}, {installed[0]['fingerprint']!r}) == 'default'; "
            "assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
