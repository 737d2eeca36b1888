"""hasrd: hierarchical residual-vector-quantized speech codecs.

Public face::

    import hasrd
    codec = hasrd.load_codec("default")          # or a save_pretrained folder
    codes = codec.encode(wav, n_q=2)             # [B, n_q, frames]
    hasrd.save_tokens("x.hsrd", codes[0].numpy(), meta)
"""
from .version import __version__
from .codecs import Codec, build_codec, load_codec
from .config import load_config

try:  # the token file module (hasrd.io.tokenfile)
    from .io.tokenfile import TokenFileError, load_tokens, save_tokens
except ImportError:  # pragma: no cover - only while the module is being written
    pass

__all__ = ["Codec", "TokenFileError", "__version__", "build_codec", "load_codec", "load_config", "load_tokens", "save_tokens"]
