"""hasrd: hierarchical residual-vector-quantized speech codecs.

Public face::

    import hasrd
    codec = hasrd.load_codec("default")          # or a save_pretrained folder
    codes = codec.encode(wav, n_q=2)             # [B, n_q, frames]
    hasrd.save_tokens("x.hsrd", codes[0].numpy(), meta)

Names are imported on first use, so ``import hasrd`` (and every CLI start) stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

_LAZY = {
    "Codec": "hasrd.codecs",
    "build_codec": "hasrd.codecs",
    "load_codec": "hasrd.codecs",
    "load_config": "hasrd.config",
    "TokenFileError": "hasrd.io.tokenfile",
    "load_tokens": "hasrd.io.tokenfile",
    "save_tokens": "hasrd.io.tokenfile",
    "tokens_to_bytes": "hasrd.io.tokenfile",
    "tokens_from_bytes": "hasrd.io.tokenfile",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hasrd' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
