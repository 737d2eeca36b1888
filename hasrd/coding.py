"""Encoding whole audio files with a codec, as ``hasrd encode`` and ``hasrd entropy-fit`` do.

* :func:`encode_file`: the codes (or a continuous codec's latent) of one audio file or corpus
  entry, encoded chunk by chunk with bounded memory, and the token or latent file header they
  would be saved with;
* :func:`frames_per_chunk`: the code frames of an encode or decode chunk of about ``seconds``;
* :func:`pick_n_q`: the codebooks to use, from an ``n_q`` or a bitrate budget.

Only numpy at import time: torch is imported where it is used. No command-line code: errors are
``ValueError`` (the CLI turns them into usage errors naming its options).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_CHUNK_SECONDS", "encode_file", "frames_per_chunk", "pick_n_q"]

#: the default length of an independently encoded chunk, in seconds (``--chunk-seconds``)
DEFAULT_CHUNK_SECONDS = 30.0


def pick_n_q(codec, n_q: int | None = None, bps: float | None = None) -> int:
    """The number of codebooks to encode with: the most whose bitrate fits ``bps`` (bit/s) when it
    is given, else ``n_q``, else all of the codec's codebooks.

    Raises:
        ValueError: ``bps`` is below the codec's lowest bitrate, or ``n_q`` is not in
            ``1..codec.num_codebooks``.
    """
    if bps is not None:
        return codec.n_q_for_bitrate(bps)
    if n_q is None:
        return codec.num_codebooks
    if not 1 <= n_q <= codec.num_codebooks:
        raise ValueError(f"the model has {codec.num_codebooks} codebooks, so n_q must be in 1..{codec.num_codebooks}")
    return n_q


def frames_per_chunk(codec, seconds: float = DEFAULT_CHUNK_SECONDS) -> int:
    """The code frames of a chunk of about ``seconds`` of audio at the codec's rate (at least 1)."""
    return max(1, int(seconds * codec.sample_rate // codec.hop_length))


def encode_file(codec, src: Path, n_q: int | None, chunk_frames: int) -> tuple[np.ndarray, dict]:
    """Codes ``[n_q, frames]`` of one audio file, encoded chunk by chunk with bounded memory (a
    continuous codec: its float32 latent ``[latent_dim, frames]``; ``n_q`` is None), and their
    header (:func:`hasrd.io.tokenfile.token_meta` / :func:`hasrd.io.latentfile.latent_meta`).

    ``src`` is a file or a :class:`hasrd.io.entry.Entry` (a Lhotse cut's span, a dataset row);
    each chunk of ``chunk_frames`` frames is encoded on its own, on the codec's device.
    """
    import torch

    from hasrd.io.entry import entry_info, iter_entry_chunks
    from hasrd.io.latentfile import latent_meta
    from hasrd.io.tokenfile import token_meta

    info = entry_info(src)  # a file, or an Entry (a Lhotse cut's span, a dataset row)
    sr, hop = codec.sample_rate, codec.hop_length
    chunk = chunk_frames * hop
    device = next(codec.parameters()).device if any(True for _ in codec.parameters()) else "cpu"
    pieces: list[np.ndarray] = []
    rows, dtype = (codec.latent_dim, torch.float32) if codec.continuous else (n_q, torch.int64)

    def run(x: np.ndarray) -> None:
        wav = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(1, 1, -1).to(device)
        codes = codec.encode_to_latent(wav) if codec.continuous else codec.encode(wav, n_q)
        want = (1, rows, math.ceil(x.shape[-1] / hop))
        if tuple(codes.shape) != want:
            raise RuntimeError(f"the codec returned codes of shape {tuple(codes.shape)}, expected {want}")
        pieces.append(codes[0].to("cpu", dtype).numpy())

    buf: list[np.ndarray] = []
    held = 0
    # read in pieces of the encode chunk's duration, so that read and encode boundaries coincide
    for block in iter_entry_chunks(src, sr, chunk / sr):
        buf.append(block[0])
        held += block.shape[-1]
        while held >= chunk:
            joined = np.concatenate(buf)
            run(joined[:chunk])
            rest = joined[chunk:]
            buf, held = ([rest] if rest.size else []), rest.size
    if held:
        run(np.concatenate(buf))
    codes = np.concatenate(pieces, axis=1) if pieces else np.zeros((rows, 0), dtype=np.float32 if codec.continuous else np.int64)
    make_meta = latent_meta if codec.continuous else token_meta
    meta = make_meta(codec, info["frames"], info["sample_rate"], info["channels"], chunk_frames=chunk_frames)
    return codes, meta
