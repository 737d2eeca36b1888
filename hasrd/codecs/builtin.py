"""Where the built-in models live: ``hasrd/pretrained/<name>/``, each a ``save_pretrained`` folder."""
from __future__ import annotations

import os
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
#: the built-in models, by name: each is a save_pretrained folder under ``hasrd/pretrained/``
BUILTIN_MODELS = ("default", "hcodec-25hz", "pitch")
DEFAULT_MODEL_DIR = PRETRAINED_DIR / "default"


def builtin_model_dir(model: str | os.PathLike | None) -> Path | None:
    """The folder of a built-in model named ``model`` (``None`` is ``"default"``), else ``None``."""
    name = "default" if model is None else str(model)
    return PRETRAINED_DIR / name if name in BUILTIN_MODELS else None
