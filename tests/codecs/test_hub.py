"""Models on the Hugging Face hub, offline: hub ids resolved from a local hub cache laid out as
huggingface_hub lays it out, model cards, and push_to_hub against a recording stand-in for HfApi."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hasrd.cli import main
from hasrd.codecs import Codec, load_codec
from hasrd.hub import CARD_MARK, HubModelNotFound, hub_cache_dir, hub_offline, is_hub_id, read_front_matter
from hasrd.io import load_tokens
from tests.conftest import speechlike, tiny_codec

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT) -> Path:
    """Put ``folder`` into the hub cache ``cache`` as ``huggingface_hub`` stores a downloaded model
    repository (https://huggingface.co/docs/huggingface_hub/guides/manage-cache):
    ``models--ORG--NAME/blobs/<hash>`` holds each file's bytes, ``snapshots/<commit>/<path>`` are
    relative symlinks to the blobs, and ``refs/main`` holds the commit hash (no newline). Returns
    the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / src.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache in ``tmp_path``, offline (the variables read at call time, not at import)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def saved(tmp_path) -> tuple[Codec, Path]:
    codec = tiny_codec("hasrd")
    return codec, codec.save_pretrained(tmp_path / "saved")


def test_the_cache_layout_is_the_one_huggingface_hub_reads(saved, offline_cache):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    _, folder = saved
    snapshot = make_hub_cache(offline_cache, "org/name", folder)
    info = scan_cache_dir(offline_cache)
    assert not info.warnings, info.warnings
    (repo,) = info.repos
    assert repo.repo_id == "org/name" and repo.repo_type == "model" and set(repo.refs) == {"main"}
    assert {f.file_name for f in next(iter(repo.revisions)).files} == {"config.json", "model.safetensors", "README.md"}
    assert try_to_load_from_cache("org/name", "config.json", cache_dir=offline_cache) == str(snapshot / "config.json")


def test_hub_id_or_local_path():
    for spec in ("org/name", "facebook/encodec_24khz", "a-b.c/d_e.f"):
        assert is_hub_id(spec), spec
    for spec in ("name", "./org/name", "/abs/path", "a/b/c", "org/", "/name", "org/na me", "org/../x", "org/name.git", "org--x/y"):
        assert not is_hub_id(spec), spec
    here = Path(__file__).resolve()
    assert not is_hub_id(here)  # an existing path is never a hub id


def test_the_environment_is_read_at_call_time(tmp_path, monkeypatch):
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub" and not hub_offline()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert hub_cache_dir() == tmp_path / "c" and hub_offline()


def test_load_codec_from_the_hub_cache_gives_identical_outputs(saved, offline_cache):
    codec, folder = saved
    make_hub_cache(offline_cache, "org/name", folder)
    x = speechlike(0.3)
    for loaded in (load_codec("org/name"), Codec.from_pretrained("org/name")):
        assert type(loaded) is type(codec) and loaded.fingerprint() == codec.fingerprint()
        with torch.inference_mode():
            for n in (1, codec.num_codebooks):
                assert torch.equal(loaded.encode(x, n), codec.encode(x, n))
                assert torch.equal(loaded.decode(codec.encode(x, n)), codec.decode(codec.encode(x, n)))


def test_an_existing_local_folder_wins_over_a_hub_id(saved, offline_cache, tmp_path, monkeypatch):
    codec, folder = saved
    make_hub_cache(offline_cache, "org/name", folder)
    torch.manual_seed(5)
    other = tiny_codec("hasrd")
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    work = tmp_path / "work"
    other.save_pretrained(work / "org" / "name")
    monkeypatch.chdir(work)
    assert load_codec("org/name").fingerprint() == other.fingerprint() != codec.fingerprint()
    assert load_codec(str(folder)).fingerprint() == codec.fingerprint()


def test_a_hub_id_missing_offline_is_one_clear_error(offline_cache):
    with pytest.raises(HubModelNotFound) as info:
        load_codec("org/missing")
    text = str(info.value)
    assert "\n" not in text and text.startswith("org/missing: ")
    assert "`hf download org/missing`" in text and "local folder" in text and str(offline_cache) in text
    with pytest.raises(FileNotFoundError, match="no such model folder"):  # not a hub id: as before
        load_codec("a/b/c")


def wav_file(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    sf.write(path, speechlike(0.4)[0, 0].numpy(), 16000)
    return path


def test_cli_encode_decode_info_with_a_hub_id(saved, offline_cache, tmp_path, capsys):
    codec, folder = saved
    make_hub_cache(offline_cache, "org/name", folder)
    src = wav_file(tmp_path)
    tok, out = tmp_path / "a.hsrd", tmp_path / "back.wav"
    assert main(["encode", str(src), "-o", str(tok), "--model", "org/name", "--n-q", "2"]) == 0
    codes, meta = load_tokens(tok)
    assert meta["fingerprint"] == codec.fingerprint() and codes.shape[0] == 2
    with torch.inference_mode():
        want = codec.encode(torch.from_numpy(sf.read(src, dtype="float32")[0]).view(1, 1, -1), 2)[0].numpy()
    np.testing.assert_array_equal(codes, want)
    assert main(["decode", str(tok), "-o", str(out), "--model", "org/name"]) == 0 and out.is_file()
    capsys.readouterr()
    assert main(["info", str(tok), "--model", "org/name"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == codec.fingerprint()


def test_cli_with_a_hub_id_missing_offline_exits_2_and_writes_nothing(offline_cache, tmp_path, capsys):
    src = wav_file(tmp_path)
    out = tmp_path / "out"
    assert main(["encode", str(src), "-o", str(out / "a.hsrd"), "--model", "org/missing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hasrd: error: org/missing: ") and "hf download org/missing" in err[0]
    assert not out.exists()
    for command in (["decode", str(src), "-o", str(out / "a.wav")], ["info", str(src)], ["export", "-o", str(out)]):
        assert main([*command, "--model", "org/missing"]) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "org/missing" in err[0] and "hf download" in err[0], (command, err)
    assert not out.exists()
    from hasrd.eval import main as eval_main

    assert eval_main(["--model", "org/missing", "--data", str(src), "--output", str(out)]) == 2
    assert "org/missing" in capsys.readouterr().err and not out.exists()


def test_the_model_card(saved, tmp_path):
    codec, folder = saved
    card = folder / "README.md"
    meta = read_front_matter(card)
    assert meta["library_name"] == "hasrd" and {"audio", "speech", "codec"} <= set(meta["tags"])
    from huggingface_hub import ModelCard

    parsed = ModelCard.load(card)
    assert parsed.data.library_name == "hasrd" and "codec" in parsed.data.tags
    text = card.read_text()
    assert CARD_MARK in text and "16000 Hz" in text and "50 frames a second" in text
    assert f"{codec.num_codebooks} codebooks" in text and "0.3, 0.6" in text  # 64-entry codebooks: 300 bit/s each
    table = "| system | kbit/s | STOI |\n| --- | ---: | ---: |\n| tiny, n_q=1 | 0.3 | 0.5 |"
    codec.save_pretrained(folder, results=table)  # a card hasrd wrote is rewritten
    assert table in card.read_text()
    own = tmp_path / "own"
    own.mkdir()
    (own / "README.md").write_text("# my notes\n")
    codec.save_pretrained(own)
    assert (own / "README.md").read_text() == "# my notes\n"  # a README hasrd did not write is kept
    assert load_codec(own).fingerprint() == codec.fingerprint()


class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records the calls, copies the uploaded folder."""

    calls: list[tuple[str, dict]] = []
    uploaded: Path | None = None

    def __init__(self, token=None, **kwargs):
        type(self).calls.append(("init", {"token": token}))

    def create_repo(self, **kwargs):
        type(self).calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        type(self).calls.append(("upload_folder", kwargs))
        shutil.copytree(kwargs["folder_path"], type(self).uploaded)
        return "commit-info"


@pytest.fixture
def recording_api(monkeypatch, tmp_path):
    import huggingface_hub

    RecordingHfApi.calls = []
    RecordingHfApi.uploaded = tmp_path / "uploaded"
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    return RecordingHfApi


def test_push_to_hub_saves_to_a_temp_folder_and_uploads_it(saved, recording_api, offline_cache):
    codec, _ = saved
    assert codec.push_to_hub("me/tiny", private=True, token="t0k", results="measured: nothing yet") == "commit-info"
    names = [c[0] for c in recording_api.calls]
    assert names == ["init", "create_repo", "upload_folder"] and recording_api.calls[0][1]["token"] == "t0k"
    create, upload = recording_api.calls[1][1], recording_api.calls[2][1]
    assert create["repo_id"] == "me/tiny" and create["private"] is True and create["exist_ok"] is True
    assert upload["repo_id"] == "me/tiny" and upload["repo_type"] == "model"
    assert not Path(upload["folder_path"]).exists()  # the temporary folder is gone
    sent = recording_api.uploaded
    assert sorted(p.name for p in sent.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (sent / "README.md").read_text()
    assert "hasrd.load_codec('me/tiny')" in card and "measured: nothing yet" in card
    make_hub_cache(offline_cache, "me/tiny", sent)  # what a download of it gives back
    assert load_codec("me/tiny").fingerprint() == codec.fingerprint()
    with pytest.raises(ValueError, match="org/name"):
        codec.push_to_hub("not a repo id")


def test_an_enhancer_export_goes_through_the_hub_too(recording_api, offline_cache):
    from hasrd.enhance import Enhancer, LatentEnhancer, load_enhancer

    codec = tiny_codec("hasrd")
    net = LatentEnhancer({"d_model": 16, "heads": 2, "ffn": 32, "layers": 1, "kernel": 3, "dropout": 0.0,
                          "form": "continuous", "latent_dim": int(codec.config["latent_dim"])})
    enh = Enhancer(codec, net).eval()
    enh.push_to_hub("me/se")
    sent = recording_api.uploaded
    assert {"README.md", "enhancer.json", "model.safetensors", "codec"} <= {p.name for p in sent.iterdir()}
    assert read_front_matter(sent / "README.md")["library_name"] == "hasrd"
    make_hub_cache(offline_cache, "me/se", sent)
    back = load_enhancer("me/se")
    x = speechlike(0.3)
    assert torch.allclose(back.enhance(x), enh.enhance(x), atol=1e-6)
    with pytest.raises(HubModelNotFound, match="me/other"):
        load_enhancer("me/other")
