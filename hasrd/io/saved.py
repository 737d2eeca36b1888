"""The one saved-model format every hasrd model kind uses (codec, enhancer, token LM,
speech-to-audio): a folder with a JSON config (``config_name``: the kind's) and
``model.safetensors``, each written atomically, read back with one-line errors, and the codec a
task model was trained on checked by its fingerprint."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

WEIGHTS_NAME = "model.safetensors"


def save_model_folder(directory: str | os.PathLike, config_name: str, payload: dict[str, Any], state: dict,
                      metadata: dict[str, str]) -> Path:
    """Write ``state`` (tensors, copied to the CPU, each its own memory) as ``model.safetensors``
    with ``metadata``, and ``payload`` as ``config_name``: each atomically."""
    from safetensors.torch import save_file

    from .atomic import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata=metadata))
    atomic_write(directory / config_name, lambda p: Path(p).write_text(json.dumps(payload, indent=2) + "\n"))
    return directory


def read_model_config(directory: str | os.PathLike, config_name: str, what: str, needs: tuple[str, ...] = ()) -> dict:
    """The JSON config of a saved-model folder; a one-line FileNotFoundError naming ``what`` (e.g.
    "a token-LM folder") when a file of it (or one of ``needs``) is missing or the config is not JSON."""
    directory = Path(directory)
    files = (config_name, WEIGHTS_NAME, *needs)
    if not all((directory / f).exists() for f in files):
        raise FileNotFoundError(f"{directory}: not {what} (needs {', '.join(files[:-1])} and {files[-1]})")
    try:
        payload = json.loads((directory / config_name).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FileNotFoundError(f"{directory}: not {what} ({config_name} is not JSON)") from None
    if not isinstance(payload, dict):
        raise FileNotFoundError(f"{directory}: not {what} ({config_name} is not a JSON object)")
    return payload


def read_weights(directory: str | os.PathLike, map_location: str = "cpu") -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / WEIGHTS_NAME), device=map_location)
