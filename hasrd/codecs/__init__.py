"""Codecs: the one interface, the HASRD, dual-stream and continuous variants, the builder and the loader."""
from __future__ import annotations

import os
from pathlib import Path

from ..hub import resolve_model_dir
from .base import Codec, CodecOutput, bitrate, codec_class, register_codec
from .continuous import ContinuousCodec
from .dualstream import DualStreamCodec
from .hasrd import HASRDCodec

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "pretrained" / "default"


def build_codec(model_config: dict) -> Codec:
    """A codec from the ``model`` section of a config (``name`` picks the variant)."""
    cfg = dict(model_config)
    name = cfg.get("name")
    if not name:
        raise ValueError("the model config needs a 'name' (hasrd, hcodec or continuous)")
    return codec_class(name).from_config(cfg)


def load_codec(model: str | os.PathLike | None = None, map_location: str = "cpu") -> Codec:
    """A trained codec in eval mode: ``None``/``"default"`` is the built-in model, else a folder
    written by :meth:`Codec.save_pretrained`, else a hub id ``org/name`` (an existing local folder
    wins; see :func:`hasrd.hub.resolve_model_dir`)."""
    if model is None or str(model) == "default":
        if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the built-in default model is not installed ({DEFAULT_MODEL_DIR}); pass --model DIR"
            )
        model = DEFAULT_MODEL_DIR
    return Codec.from_pretrained(resolve_model_dir(model), map_location=map_location)


__all__ = [
    "Codec", "CodecOutput", "ContinuousCodec", "DEFAULT_MODEL_DIR", "DualStreamCodec", "HASRDCodec",
    "bitrate", "build_codec", "codec_class", "load_codec", "register_codec",
]
