"""Streaming encode and decode for causal codecs (``model.causal: true``).

::

    enc = codec.stream_encoder(n_q=3)
    dec = codec.stream_decoder()
    for chunk in chunks:                  # [B, 1, n] at codec.sample_rate, any n >= 0
        codes = enc.push(chunk)           # [B, 3, f]: every frame completed so far (f may be 0)
        audio = dec.push(codes)           # [B, 1, f * hop]
    codes = enc.flush()                   # the last, zero-padded frame (if samples are left)
    audio = dec.push(codes)

Each stream keeps, per layer, the left context that layer needs (see :mod:`hasrd.nn.causal`), so a
push costs work proportional to the new input, never to the prefix. Concatenating what a stream
returns gives exactly the offline result: ``encode(x, n_q)`` (the zero padding of the last frame
is what :meth:`StreamEncoder.flush` adds) and ``decode(codes)``.

A stream serves one batch of signals from start to end; start a new one for the next signal.
Streams of one codec are independent of each other (all state lives in the stream object).
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["StreamDecoder", "StreamEncoder", "StreamingError"]


class StreamingError(RuntimeError):
    """The codec cannot stream, or a stream was used wrongly."""


def _check_streamable(codec) -> None:
    if not codec.causal:
        raise StreamingError(
            f"this {codec.codec_name} codec is not causal: its encoder and generator look ahead over "
            "the whole input, so streamed output would differ from encode/decode. Build it with "
            "'model.causal: true' (e.g. codec_configs/hasrd_cpu_causal.yaml) to stream."
        )
    if codec.training:
        raise StreamingError("streaming needs eval mode (call codec.eval()); training mode updates the codebooks")


class _Stream:
    def __init__(self, codec):
        _check_streamable(codec)
        self.codec = codec
        self._state: Any = None
        self._batch: int | None = None
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StreamingError("this stream was flushed; start a new one for the next signal")

    def _check_batch(self, batch: int) -> None:
        if self._batch is None:
            self._batch = batch
        elif batch != self._batch:
            raise StreamingError(f"this stream carries a batch of {self._batch}, got a chunk of batch {batch}")


class StreamEncoder(_Stream):
    """Audio chunks in, codes out as soon as whole frames are available (see the module docstring).

    Attributes:
        samples_in: samples pushed so far (per batch item).
        frames_out: frames returned so far.
    """

    def __init__(self, codec, n_q: int | None = None):
        super().__init__(codec)
        self.n_q = codec.check_n_q(n_q)
        self.samples_in = 0
        self.frames_out = 0
        self._like: torch.Tensor | None = None  # dtype/device of the input, for empty results

    def _empty(self) -> torch.Tensor:
        device = self._like.device if self._like is not None else None
        return torch.zeros(self._batch or 1, self.n_q, 0, dtype=torch.long, device=device)

    @torch.inference_mode()
    def _step(self, chunk: torch.Tensor) -> torch.Tensor:
        codes, self._state = self.codec._stream_encode_step(chunk, self.n_q, self._state)
        if codes is None:
            return self._empty()
        self.frames_out += codes.shape[-1]
        return codes

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """``[B, 1, n]`` (any ``n``) -> ``LongTensor[B, n_q, f]``, the frames completed by this chunk."""
        self._check_open()
        if chunk.dim() != 3 or chunk.shape[1] != 1:
            raise ValueError(f"expected an audio chunk [B, 1, n], got {tuple(chunk.shape)}")
        self._check_batch(chunk.shape[0])
        self._like = chunk
        if chunk.shape[-1] == 0:
            return self._empty()
        self.samples_in += chunk.shape[-1]
        return self._step(chunk)

    def flush(self) -> torch.Tensor:
        """Complete the last frame with zeros (as :meth:`Codec.encode` pads) and return its codes;
        ``[B, n_q, 0]`` when the input ended on a frame boundary. Closes the stream."""
        self._check_open()
        self._closed = True
        pad = -self.samples_in % self.codec.hop_length
        if not pad:
            return self._empty()
        like = self._like
        return self._step(like.new_zeros(like.shape[0], 1, pad))


class StreamDecoder(_Stream):
    """Codes in (any number of frames per push), audio out: ``f`` frames give ``f * hop`` samples.

    ``n_q`` may change from one push to the next (each frame is decoded from the codebooks it
    comes with); the result equals :meth:`Codec.decode` when it stays constant.

    Attributes:
        frames_in: frames pushed so far.
    """

    def __init__(self, codec):
        super().__init__(codec)
        self.frames_in = 0

    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """``LongTensor[B, n_q, f]`` -> ``[B, 1, f * hop]``."""
        self._check_open()
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, n_q, frames], got {tuple(codes.shape)}")
        self.codec.check_n_q(int(codes.shape[1]))
        self._check_batch(codes.shape[0])
        if codes.shape[-1] == 0:
            param = next(self.codec.parameters())
            return torch.zeros(codes.shape[0], 1, 0, dtype=param.dtype, device=codes.device)
        with torch.inference_mode():
            audio, self._state = self.codec._stream_decode_step(codes, self._state)
        self.frames_in += codes.shape[-1]
        return audio

    def flush(self) -> torch.Tensor:
        """A causal generator holds nothing back: returns ``[B, 1, 0]`` and closes the stream."""
        self._check_open()
        self._closed = True
        param = next(self.codec.parameters())
        return torch.zeros(self._batch or 1, 1, 0, dtype=param.dtype, device=param.device)
