"""hasrd's own codecs as systems: :class:`HasrdModel` (one loaded codec, encoding each input once
for all its ``n_q``), its rows (:class:`HasrdSystem` per ``n_q``, :class:`ContinuousSystem`, the
:class:`UnquantisedSystem` bound), :func:`model_systems` and :func:`load_hasrd_model`."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hasrd.io.audio import resample

from .base import System, fit_length, from_model, mono, to_model


class HasrdModel:
    """One loaded :class:`hasrd.codecs.base.Codec`, encoding each input once for all its n_q.

    Codebooks form a prefix hierarchy (``n_q`` means the first ``n_q``), so the codes of all
    requested ``n_q`` come from one ``encode`` at the largest of them.
    """

    def __init__(self, codec, label: str):
        self.codec = codec.eval()
        self.label = label
        self._cache_key: str | None = None
        self._cache: tuple | None = None

    def codes(self, audio: np.ndarray, sample_rate: int, n_q: int | None = None):
        """``(LongTensor[n_q, frames], samples at the codec's rate)`` of ``audio`` (all codebooks
        when ``n_q`` is None)."""
        import torch

        n_q = self.codec.num_codebooks if n_q is None else n_q
        audio = mono(audio)
        key = hashlib.blake2b(audio.tobytes(), digest_size=16).hexdigest() + f"/{sample_rate}"
        if self._cache_key != key:
            wav, length = to_model(audio, sample_rate, self.codec.sample_rate)
            with torch.inference_mode():
                codes = self.codec.encode(wav, self.codec.num_codebooks)[0]
            self._cache_key, self._cache = key, (codes, length)
        codes, length = self._cache
        return codes[:n_q], length

    def decode(self, codes, length: int):
        import torch

        with torch.inference_mode():
            y = self.codec.decode(codes.unsqueeze(0))[0, 0]
        return fit_length(y.float().numpy(), length)

    def payload_bytes(self, codes, length: int, sample_rate: int) -> int:
        """Bytes of the ``.hsrd`` token file these codes would be saved as (header and CRC included)."""
        from hasrd.io.tokenfile import token_meta, tokens_to_bytes

        return len(tokens_to_bytes(codes, token_meta(self.codec, length=length, orig_sample_rate=sample_rate)))


class HasrdSystem(System):
    """A hasrd codec decoding from its first ``n_q`` codebooks."""

    kind = "hasrd"

    def __init__(self, model: HasrdModel, n_q: int):
        self.model = model
        self.n_q = model.codec.check_n_q(n_q)
        self.family = f"hasrd:{model.label}"
        self.name = f"hasrd:{model.label}@nq{n_q}"
        self.bitrate_nominal = float(model.codec.bitrate(n_q))

    def process(self, audio, sample_rate):
        audio = mono(audio)
        codes, codec_len = self.model.codes(audio, sample_rate, self.n_q)
        y = self.model.decode(codes, codec_len)
        out = fit_length(resample(y, self.model.codec.sample_rate, sample_rate), audio.size)
        return out, self.model.payload_bytes(codes, audio.size, sample_rate)


class ContinuousSystem(System):
    """A continuous hasrd codec (not a ``TokenCodec``): its latent rounded as a ``.hsrl`` file stores it
    (``encode_to_latent(x, quantize=True)``), decoded back. Nominal bitrate: ``latent_bitrate(16)``;
    payload: the bytes of the ``.hsrl`` file the latent would be saved as (safetensors header included)."""

    kind = "hasrd-cont"

    def __init__(self, model: HasrdModel):
        from hasrd.codecs import TokenCodec

        if isinstance(model.codec, TokenCodec):
            raise ValueError(f"{model.label}: not a continuous codec")
        self.model = model
        self.family = self.name = f"hasrd-cont:{model.label}"
        self.bitrate_nominal = float(model.codec.latent_bitrate(16))

    def process(self, audio, sample_rate):
        import torch

        from hasrd.io.latentfile import latent_meta, latent_to_bytes

        audio = mono(audio)
        codec = self.model.codec
        wav, length = to_model(audio, sample_rate, codec.sample_rate)
        with torch.inference_mode():
            z = codec.encode_to_latent(wav, quantize=True)  # rounded to float16: what the file stores
            y = codec.decode_latent(z)[0, 0]
        meta = latent_meta(codec, length=audio.size, orig_sample_rate=sample_rate)
        payload = len(latent_to_bytes(z[0].to(torch.float16).numpy(), meta))
        return from_model(y, codec.sample_rate, length, sample_rate, audio.size), payload


class UnquantisedSystem(System):
    """A bound, not a codec: a token codec's decoder fed its *unquantised* latent
    (``decode_latent(encode_to_latent(x))``), so no codebook costs anything. It scores what the
    encoder and decoder allow at any bitrate; the gap to a ``HasrdSystem`` row is what the
    codebooks cost. Its nominal bitrate is that of the latent stored as float16
    (``latent_bitrate(16)``), which is what sending it would cost."""

    kind = "hasrd-bound"

    def __init__(self, model: HasrdModel):
        from hasrd.codecs import TokenCodec

        codec = model.codec
        if not isinstance(codec, TokenCodec) or not hasattr(codec, "encoder"):
            raise ValueError(f"{model.label}: the unquantised bound needs a token codec with one encoder and decoder")
        self.model = model
        self.family = f"hasrd-bound:{model.label}"
        self.name = f"hasrd:{model.label}@unquantised"
        self.bitrate_nominal = float(codec.latent_bitrate(16))

    def process(self, audio, sample_rate):
        import torch

        audio = mono(audio)
        codec = self.model.codec
        wav, length = to_model(audio, sample_rate, codec.sample_rate)
        with torch.inference_mode():
            z = codec.encode_to_latent(wav)
            y = codec.decode_latent(z)[0, 0]
        return from_model(y, codec.sample_rate, length, sample_rate, audio.size), 2 * z.numel()


def model_systems(model: HasrdModel, n_q_list: list[int], bound: bool = False) -> tuple[list[System], list[str]]:
    """The rows of one hasrd model and the skip lines: a token codec gives one
    :class:`HasrdSystem` per usable ``n_q`` (and, with ``bound``, the :class:`UnquantisedSystem`
    bound); a continuous codec one :class:`ContinuousSystem` (``n_q`` and the bound do not apply).
    The one place the evaluator branches on the codec's kind."""
    from hasrd.codecs import TokenCodec

    if not isinstance(model.codec, TokenCodec):
        skipped = [f"skip hasrd:{model.label}@unquantised: a continuous codec has no codebooks to bound"] if bound else []
        return [ContinuousSystem(model)], skipped
    systems, skipped = [], []
    for n in n_q_list:
        if not 1 <= n <= model.codec.num_codebooks:
            skipped.append(f"skip hasrd:{model.label}@nq{n}: the model has {model.codec.num_codebooks} codebooks")
            continue
        systems.append(HasrdSystem(model, n))
    if bound:
        try:
            systems.append(UnquantisedSystem(model))
        except ValueError as exc:
            skipped.append(f"skip hasrd:{model.label}@unquantised: {exc}")
    return systems, skipped


def load_hasrd_model(spec: str) -> HasrdModel:
    """A built-in model's name (``default``, ``hcodec-25hz``, ``pitch``), a save_pretrained folder or a hub id
    ``org/name`` (:func:`hasrd.codecs.load_codec`) -> :class:`HasrdModel` (label: the built-in
    name / the folder's or the repository's name)."""
    from hasrd.codecs import builtin_model_dir, load_codec

    codec = load_codec(spec)
    builtin = builtin_model_dir(spec)
    label = builtin.name if builtin is not None else Path(spec).resolve().name
    return HasrdModel(codec, label)
