import json

from hasrd.io.manifest import read_manifest
from tests.scripts import load_script

mm = load_script("mix_manifests")


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_joins_with_absolute_paths_readable_anywhere(tmp_path):
    for corpus in ("synth", "real"):
        (tmp_path / corpus / "wavs").mkdir(parents=True)
        (tmp_path / corpus / "wavs" / "a.wav").write_bytes(b"x")
    write(tmp_path / "synth" / "manifest.jsonl", [{"path": "wavs/a.wav", "text": "hi"}])
    write(tmp_path / "real" / "manifest.jsonl", [{"path": "wavs/a.wav", "speaker": "s1"}, {"path": str(tmp_path / "synth" / "wavs" / "a.wav")}])
    out = tmp_path / "elsewhere" / "mix.jsonl"
    assert mm.main(["-o", str(out), str(tmp_path / "synth" / "manifest.jsonl"), str(tmp_path / "real" / "manifest.jsonl"), "--check"]) == 0
    entries = read_manifest(out)
    assert [e.path for e in entries] == [tmp_path / "synth" / "wavs" / "a.wav", tmp_path / "real" / "wavs" / "a.wav",
                                         tmp_path / "synth" / "wavs" / "a.wav"]
    assert entries[0].text == "hi" and entries[1].extra["speaker"] == "s1"
    assert [e.extra["corpus"] for e in entries] == ["synth", "real", "real"]


def test_bad_input_is_one_line_and_nothing_written(tmp_path, capsys):
    write(tmp_path / "m.jsonl", [{"nopath": 1}])
    out = tmp_path / "mix.jsonl"
    assert mm.main(["-o", str(out), str(tmp_path / "m.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.jsonl:1" in err[0]
    write(tmp_path / "n.jsonl", [{"path": "missing.wav"}])
    assert mm.main(["-o", str(out), str(tmp_path / "n.jsonl"), "--check"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".mix*"))
