"""Codecs: the one interface (:class:`Codec`, the latent; :class:`TokenCodec`, plus codes), the HASRD,
dual-stream and continuous variants, the latent view (:class:`CodecView`), the builder and the loader."""
from __future__ import annotations

import os

from ..hub import resolve_model_dir
from .base import Codec, CodecOutput, TokenCodec, bitrate
from .builtin import BUILTIN_MODELS, DEFAULT_MODEL_DIR, PRETRAINED_DIR, builtin_model_dir
from .continuous import ContinuousCodec
from .dualstream import DualStreamCodec
from .envelope import EnvelopeCodec
from .hasrd import HASRDCodec
from .latent import CodecView
from .pitch import PitchCodec
from .registry import codec_class, register_codec


def builtin_model_of(codec_name: str, fingerprint: str) -> str | None:
    """The name of the built-in model with this codec name and weights fingerprint, if one has them:
    looked up in ``hasrd/pretrained/builtin_index.json`` (:mod:`hasrd.io.modelindex`, kept equal to
    the shipped models by a test), so no model is loaded."""
    from ..io.modelindex import builtin_name

    name = builtin_name(codec_name, fingerprint)
    return name if name in BUILTIN_MODELS else None


def build_codec(model_config: dict, strict: bool = False) -> Codec:
    """A codec from the ``model`` section of a config (``name`` picks the variant); ``strict``
    (training): a ValueError for a key the codec does not read (:mod:`hasrd.codecs.config_keys`)."""
    cfg = dict(model_config)
    name = cfg.get("name")
    if not name:
        raise ValueError("the model config needs a 'name' (hasrd, hcodec or continuous)")
    return codec_class(name).from_config(cfg, strict=strict)


def load_codec(model: str | os.PathLike | None = None, map_location: str = "cpu") -> Codec:
    """A trained codec in eval mode: ``None``/``"default"`` is the built-in default model and a
    name of :data:`BUILTIN_MODELS` (``"hcodec-25hz"``) another built-in model, else a folder
    written by :meth:`Codec.save_pretrained`, else a hub id ``org/name`` (an existing local folder
    wins; see :func:`hasrd.hub.resolve_model_dir`)."""
    builtin = builtin_model_dir(model)
    if builtin is not None:
        if not (builtin / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the built-in {builtin.name} model is not installed ({builtin}); pass --model DIR"
            )
        model = builtin
    return Codec.from_pretrained(resolve_model_dir(model), map_location=map_location)


__all__ = [
    "BUILTIN_MODELS", "Codec", "CodecOutput", "CodecView", "ContinuousCodec", "DEFAULT_MODEL_DIR", "DualStreamCodec", "EnvelopeCodec",
    "HASRDCodec", "PRETRAINED_DIR", "PitchCodec", "TokenCodec", "bitrate", "builtin_model_dir", "builtin_model_of", "build_codec",
    "codec_class", "load_codec", "register_codec",
]
