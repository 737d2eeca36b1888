"""Reading and writing hasrd's files: audio (:mod:`hasrd.io.audio`), token files
(:mod:`hasrd.io.tokenfile`) and corpus manifests (:mod:`hasrd.io.manifest`)."""
from .tokenfile import TokenFileError, load_tokens, save_tokens, tokens_from_bytes, tokens_to_bytes

__all__ = ["TokenFileError", "load_tokens", "save_tokens", "tokens_from_bytes", "tokens_to_bytes"]
