"""What hasrd's two file containers and the entropy coder share, so that each depends on this
module and none on another: the hard caps a header may declare, the error type of token data
(:class:`TokenFileError`, raised by the token container and by its entropy-coded payload alike),
the header fields every file made by a codec carries (:func:`codec_meta`), and the small value
checks both headers use.

Dependencies run one way: ``tokenfile -> entropy -> header``, ``tokenfile -> compactheader ->
tokenheader -> header``, ``latentfile -> header``, and the files are written through
:mod:`hasrd.io.atomic`.
"""
from __future__ import annotations

from typing import Any

# Hard caps on what a header may declare (a file above them is refused, not allocated).
MAX_N_Q = 256
MAX_CODEBOOK_SIZE = 1 << 24
MAX_FRAMES = 1 << 32
MAX_LENGTH = 1 << 44
MAX_SAMPLE_RATE = 10_000_000
MAX_CHANNELS = 65535
MAX_STR = 128


class TokenFileError(ValueError):
    """A token file (or the codes/metadata given to the writer, or its entropy tables) is malformed."""


def show(v: Any) -> str:
    """A value for an error message, cut to 40 characters."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def short_string(v: Any) -> bool:
    """Whether ``v`` is a non-empty printable string of at most :data:`MAX_STR` characters."""
    return isinstance(v, str) and 0 < len(v) <= MAX_STR and v.isprintable()


def reject_constant(name: str):
    """``json.loads(parse_constant=...)``: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def frames_cover(num_frames: int, length: int, frame_rate: float, orig_sample_rate: int) -> bool:
    """Whether ``num_frames`` at ``frame_rate`` cover ``length`` samples at ``orig_sample_rate``
    (ceil of the duration in frames), give or take the few samples that chunked resampling may add
    or drop. This also bounds how much audio a decoder will make of a file: never much more than
    its frames describe."""
    expected = length * frame_rate / orig_sample_rate
    slack = 2 + num_frames / 1000
    return expected - slack <= num_frames <= expected + slack


def codec_meta(codec: Any, shape: dict, length: int, orig_sample_rate: int, channels: int = 1, **extra: Any) -> dict:
    """The ``meta`` every file made by ``codec`` carries, shared by token and latent files: codec
    name, fingerprint and rates, then ``shape`` (what the payload holds per frame), then ``length``
    samples at ``orig_sample_rate``, ``channels`` and ``extra``. The key order is part of the
    header bytes, so it is fixed here once."""
    meta = {
        "codec": codec.codec_name,
        "fingerprint": codec.fingerprint(),
        "sample_rate": int(codec.sample_rate),
        "hop_length": int(codec.hop_length),
        "frame_rate": float(codec.frame_rate),
        **shape,
        "length": int(length),
        "orig_sample_rate": int(orig_sample_rate),
        "channels": int(channels),
    }
    meta.update(extra)
    return meta
