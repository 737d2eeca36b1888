"""The nominal bitrate of a codebook layout: pure Python, so that reading a token file's header
(``hasrd info``) needs no torch."""
from __future__ import annotations

import math


def bitrate(frame_rate: float, codebook_sizes: list[int], n_q: int) -> float:
    """Nominal bitrate in bits/s of the first ``n_q`` codebooks: ``frame_rate * sum(log2 K_i)``.

    This is the only place hasrd computes a bitrate; the CLI, token headers and the evaluator
    all come here, through :meth:`hasrd.codecs.TokenCodec.bitrate` where a model is loaded.
    """
    if not 1 <= n_q <= len(codebook_sizes):
        raise ValueError(f"n_q must be in 1..{len(codebook_sizes)}, got {n_q}")
    return float(frame_rate) * sum(math.log2(k) for k in codebook_sizes[:n_q])
