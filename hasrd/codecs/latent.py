"""The latent view of a codec: what latent-space enhancement, the token LM and STAR's prompt encoder read.

Built on the public codec interface only (:meth:`Codec.encode_to_latent`, :meth:`Codec.decode_latent`,
and for a :class:`TokenCodec` :meth:`~TokenCodec.latent_to_codes` / :meth:`~TokenCodec.quantize_latent`),
so it works with any codec, present or future, without knowing its parts.
"""
from __future__ import annotations

import torch

from .base import Codec, TokenCodec


class CodecView:
    """The two representations of a codec that enhancement and the token LM work on.

    ``continuous``: the latent before quantization, :meth:`Codec.encode_to_latent` (a token codec's
    encoder output, which its RVQ quantizes; for the dual-stream codec the semantic latent then the
    acoustic one, stacked on the channel axis; a continuous codec's latent). ``tokens``: the codes
    of all codebooks (a token codec only: :attr:`tokens`). Works with every codec.
    """

    def __init__(self, codec: Codec):
        if not isinstance(codec, Codec):
            raise ValueError(f"a codec view needs a hasrd codec, not {type(codec).__name__}")
        self.codec = codec
        #: whether the codec has codes (a :class:`TokenCodec`); else :meth:`analyse` gives no codes
        self.tokens = isinstance(codec, TokenCodec)

    @property
    def latent_dim(self) -> int:
        return int(self.codec.latent_dim)

    @torch.inference_mode()
    def analyse(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, 1, T]`` -> (latent ``[B, D, F]``, codes ``[B, num_codebooks, F]`` or None), from one
        encoder pass: the codes are ``codec.encode(wav)``."""
        z = self.codec.encode_to_latent(wav)
        return z, (self.codec.latent_to_codes(z) if self.tokens else None)

    @torch.inference_mode()
    def synthesize_latent(self, z: torch.Tensor, requantize: bool) -> torch.Tensor:
        """Latent ``[B, D, F]`` -> ``[B, 1, F * hop]``: decoded directly, or (``requantize``, a token
        codec) through the quantizer with all codebooks first; a continuous codec ignores ``requantize``."""
        if requantize and self.tokens:
            z = self.codec.quantize_latent(z)
        return self.codec.decode_latent(z)

    @torch.inference_mode()
    def synthesize_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if not self.tokens:
            raise ValueError(f"{self.codec.codec_name} has no codes to decode (a continuous codec)")
        return self.codec.decode(codes)
