"""Models on the Hugging Face hub: hub ids, the local hub cache, model cards and uploads.

A model is named by a local folder or by a hub id ``org/name``, decided as transformers does: a
path that exists locally wins; otherwise a name of the form ``org/name`` is a hub id, resolved
with ``huggingface_hub.snapshot_download`` into the local hub cache. With ``HF_HUB_OFFLINE=1``
(or no network) only the cache is looked at.

huggingface_hub reads ``HF_HUB_CACHE``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` once, when it is first
imported; this module reads them again at every call (:func:`hub_cache_dir`, :func:`hub_offline`)
and passes ``cache_dir`` and ``local_files_only`` explicitly, so a variable set later (a test's
monkeypatch, a notebook cell) is obeyed.

Only the standard library at import time: huggingface_hub is imported where it is used.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

#: ``org/name``: one slash, letters, digits, ``-``, ``_`` and ``.`` on both sides (the hub's rules)
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_TRUE = {"1", "ON", "YES", "TRUE"}
CARD_NAME = "README.md"
#: the first line after a generated card's front matter; a README.md without it is the user's
#: own and is never overwritten
CARD_MARK = "<!-- model card written by hasrd save_pretrained -->"
DOWNLOAD_HINT = "hf download {repo_id}"  # huggingface_hub >= 1.0 (``huggingface-cli download`` before)


class HubModelNotFound(FileNotFoundError):
    """A hub id that is neither a local folder nor in the local hub cache (one-line message)."""


def is_hub_id(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a hub model: not an existing local path, and of the form ``org/name``."""
    text = str(spec)
    if Path(text).exists() or not _REPO_ID.fullmatch(text):
        return False
    return ".." not in text and "--" not in text and not text.endswith((".git", "."))


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub would choose it from the environment *now*:
    ``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``)."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(os.path.expandvars(env[key])).expanduser()
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(env["HF_HOME"])).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set to 1/ON/YES/TRUE, read now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE


def not_found_message(repo_id: str, what: str = "model", cause: str | None = None) -> str:
    """The one line for a hub id that cannot be resolved: the id, where it was looked for, the fix."""
    where = f"the local hub cache {hub_cache_dir()}" + (" (HF_HUB_OFFLINE is set)" if hub_offline() else "")
    why = f" ({cause})" if cause else ""
    return (f"{repo_id}: no such local {what} folder, and hub model {repo_id} is not in {where}{why}; "
            f"download it with `{DOWNLOAD_HINT.format(repo_id=repo_id)}` when online, or pass a local folder")


_RESOLVED: dict[tuple, Path] = {}


def resolve_model_dir(spec: str | os.PathLike, what: str = "model", revision: str | None = None) -> Path:
    """The local folder that ``spec`` names: ``spec`` itself when it exists, else the snapshot
    folder of hub id ``spec`` (downloaded unless offline, else from the cache).

    Raises:
        FileNotFoundError: ``spec`` is not an existing path and not of the hub id form (message
            ``SPEC: no such WHAT folder``, as before hub ids were understood).
        HubModelNotFound: a hub id that is not in the local cache and cannot be downloaded.
    """
    path = Path(spec)
    if path.exists():
        return path
    text = str(spec)
    if not is_hub_id(text):
        raise FileNotFoundError(f"{path}: no such {what} folder")
    key = (text, revision, str(hub_cache_dir()), hub_offline())
    hit = _RESOLVED.get(key)
    if hit is not None and hit.is_dir():
        return hit
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - a transformers dependency
        raise HubModelNotFound(f"{text}: no such local {what} folder (and huggingface_hub is not installed "
                               "to look for a hub model of that id)") from None
    try:
        folder = snapshot_download(text, revision=revision, cache_dir=str(hub_cache_dir()),
                                   local_files_only=hub_offline())
    except LocalEntryNotFoundError:
        raise HubModelNotFound(not_found_message(text, what)) from None
    except Exception as exc:  # repository not found, gated, incomplete snapshot, network
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise HubModelNotFound(not_found_message(text, what, f"{type(exc).__name__}: {first}")) from None
    _RESOLVED[key] = Path(folder)
    return Path(folder)


# ---- model cards -------------------------------------------------------------------------------


def _yaml_list(key: str, values: list[str]) -> list[str]:
    return [f"{key}:"] + [f"- {v}" for v in values]


def front_matter(tags: list[str], extra: dict[str, str] | None = None) -> str:
    """The YAML block the hub reads: ``library_name: hasrd`` and ``tags``."""
    lines = ["---", "library_name: hasrd", *_yaml_list("tags", tags)]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return "\n".join(lines + ["---"]) + "\n"


def _kbps(bps: float) -> str:
    return f"{bps / 1000:.3g}"


_CODEC_KINDS = {"hasrd": "HASRD (semantic codebook first, residual acoustic codebooks, GAN vocoder)",
                "hcodec": "H-Codec style dual stream (acoustic and semantic branches, fused for decoding)",
                "continuous": "continuous latent (no codebooks)"}


def codec_card(facts: dict[str, Any], repo_id: str | None = None, results: str | None = None) -> str:
    """A model card for a codec from :meth:`hasrd.codecs.Codec.describe` (``facts``), with the
    caller's measured ``results`` (markdown, e.g. the evaluator's table) when given."""
    name = facts.get("codec", "hasrd")
    kind = _CODEC_KINDS.get(name, f"`{name}`")
    lines = [front_matter(["audio", "speech", "codec", "speech-codec"] + ([f"hasrd-{name}"] if name != "hasrd" else [])) + CARD_MARK, "",
             f"# {repo_id.split('/')[-1] if repo_id else f'hasrd {name} codec'}", ""]
    sr, fr = facts.get("sample_rate"), facts.get("frame_rate")
    if facts.get("continuous"):
        lines.append(f"A hasrd speech codec, {kind}: {sr} Hz audio, "
                     f"{fr:g} latent frames a second of {facts.get('latent_dim')} values "
                     f"({_kbps(facts.get('latent_bitrate_float16', 0.0))} kbit/s as float16).")
    else:
        sizes = facts.get("codebook_sizes") or []
        n, sem = facts.get("num_codebooks", len(sizes)), facts.get("num_semantic_codebooks", 0)
        same = len(set(sizes)) == 1
        books = f"{n} codebooks of {sizes[0]} entries" if same and sizes else f"{n} codebooks (sizes {sizes})"
        rates = ", ".join(_kbps(b) for b in (facts.get("bitrates") or {}).values())
        lines.append(f"A hasrd speech codec, {kind}: {sr} Hz audio, {fr:g} frames a second, {books} "
                     f"({sem} semantic first, then acoustic); `n_q` = 1..{n} codebooks give {rates} kbit/s "
                     "from the one model.")
    if facts.get("parameters"):
        lines[-1] += f" {facts['parameters'] / 1e6:.2f} M parameters."
    cont = bool(facts.get("continuous"))
    enc, dec, what = ("encode_to_latent", "decode_latent", "z") if cont else ("encode", "decode", "codes")
    lines += ["", "## Use", "", "```python", "import hasrd", "",
              f"codec = hasrd.load_codec({(repo_id or 'MODEL_DIR_OR_HUB_ID')!r})",
              f"{what} = codec.{enc}(wav)          # wav: [batch, 1, samples] at codec.sample_rate",
              f"audio = codec.{dec}({what})", "```", "",
              f"or `hasrd encode speech/ -o {'latents/ --continuous' if cont else 'tokens/'} --model "
              f"{repo_id or 'MODEL'}`. The folder holds `config.json` (the architecture) and `model.safetensors` "
              "(the weights).", ""]
    lines += ["## Results", "", results.strip() if results else "No measurements were given when this card was written.", ""]
    return "\n".join(lines)


def enhancer_card(facts: dict[str, Any], codec_facts: dict[str, Any], repo_id: str | None = None,
                  results: str | None = None) -> str:
    """A model card for a :class:`hasrd.enhance.Enhancer` export (``facts`` = its ``describe()``)."""
    lines = [front_matter(["audio", "speech", "codec", "speech-enhancement"]) + CARD_MARK, "",
             f"# {repo_id.split('/')[-1] if repo_id else 'hasrd enhancer'}", "",
             f"Speech enhancement in the latent space of a hasrd **{codec_facts.get('codec')}** codec "
             f"({codec_facts.get('sample_rate')} Hz, {codec_facts.get('frame_rate', 0):g} frames a second): "
             f"the {facts.get('form')} form, {facts.get('parameters', 0) / 1e6:.2f} M parameters in the network. "
             "The codec it works in is in `codec/`.", "",
             "## Use", "", "```bash", f"hasrd enhance noisy/ -o enhanced/ --model {repo_id or 'MODEL'}", "```", "",
             "## Results", "", results.strip() if results else "No measurements were given when this card was written.", ""]
    return "\n".join(lines)


def write_card(directory: str | os.PathLike, text: str) -> bool:
    """Write ``DIR/README.md`` unless a README.md that hasrd did not write is there (kept).
    Returns whether the card was written."""
    from .io.atomic import atomic_write

    path = Path(directory) / CARD_NAME
    if path.is_file() and CARD_MARK not in path.read_text(errors="replace"):
        return False
    atomic_write(path, lambda p: Path(p).write_text(text))
    return True


def read_front_matter(path: str | os.PathLike) -> dict[str, Any]:
    """The YAML front matter of a model card as a dict (empty if it has none)."""
    import yaml

    text = Path(path).read_text()
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    return yaml.safe_load(text[4:end]) or {}


# ---- uploads -------------------------------------------------------------------------------------


def push_folder(save: Callable[[Path], Any], repo_id: str, *, card: Callable[[Path, str], Any] | None = None,
                private: bool | None = None, token: str | None = None, revision: str | None = None,
                commit_message: str | None = None, create_repo: bool = True):
    """``save(tmp)`` into a temporary folder, (re)write its card for ``repo_id`` with
    ``card(tmp, repo_id)``, create the repository if needed and upload the folder with
    ``huggingface_hub.HfApi().upload_folder``. Returns what ``upload_folder`` returns."""
    from huggingface_hub import HfApi

    if not _REPO_ID.fullmatch(repo_id):
        raise ValueError(f"{repo_id!r} is not a hub repository id (org/name)")
    api = HfApi(token=token)
    tmp = Path(tempfile.mkdtemp(prefix="hasrd-push-"))
    try:
        save(tmp)
        if card is not None:
            card(tmp, repo_id)
        if create_repo:
            api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(tmp), revision=revision,
                                 commit_message=commit_message or "Upload hasrd model")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
