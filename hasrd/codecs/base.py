"""The one codec interface every hasrd variant implements, in two layers.

* :class:`Codec`, every codec: waveform in, a latent ``[B, latent_dim, frames]`` at
  :attr:`~Codec.frame_rate`, and back (:meth:`~Codec.encode_to_latent`,
  :meth:`~Codec.decode_latent`), the codebook facts (none for a codec without codes), identity and
  persistence. The continuous codec is exactly this.
* :class:`TokenCodec`, the codecs whose bottleneck is a residual vector quantizer: it adds the
  operations on codes (:meth:`~TokenCodec.encode`, :meth:`~TokenCodec.decode`, the bitrate, ``n_q``,
  streaming) and the bridge between the two views (:meth:`~TokenCodec.latent_to_codes`,
  :meth:`~TokenCodec.codes_to_latent`). ``isinstance(codec, TokenCodec)`` is the one capability
  check; the class attribute :attr:`Codec.continuous` is its negation, kept for the callers that
  branch on it.

The CLI, the token file format, the trainer and the evaluator talk to a codec only through these
classes, so a new variant needs no special case anywhere else.

Code layout: ``codes`` are ``LongTensor[B, n_q, frames]``; codebooks are ordered so that the first
``num_semantic_codebooks`` are the semantic ones, and asking for ``n_q`` codebooks always means
"the first ``n_q``" (a prefix). Lower ``n_q`` is a lower bitrate from the same model.

For a token codec the two views agree exactly (tested):
``decode(encode(x, n_q)) == decode_latent(encode_to_latent(x, quantize=True, n_q=n_q))`` and
``encode(x, n_q) == latent_to_codes(encode_to_latent(x), n_q)``.
"""
from __future__ import annotations

import abc
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..rates import bitrate
from .config_keys import OUTSIDE_KEYS, ReadTracker, nearest_read, plain, unread_keys
from .persist import PersistedCodec


@dataclass
class CodecOutput:
    """What a codec's training forward returns.

    Attributes:
        audio: reconstructed waveform ``[B, 1, T]`` (same length as the input), or None when the
            model decodes no waveform in this training stage (a continuous codec's stage 1).
        codes: ``[B, num_codebooks, frames]`` (all codebooks, before any dropout mask; a
            continuous codec gives ``[B, 0, frames]``).
        n_q: ``LongTensor[B]``, how many codebooks each item was decoded with.
        losses: named loss terms computed inside the model (``vq``, ...).
        metrics: named scalars to log (per-codebook usage/perplexity, ...).
        semantic: the model's semantic predictions that distillation losses compare with a
            teacher: ``{"features": [B, frames, D_teacher], "unit_logits": [B, frames, n_units]}``
            (a continuous codec in stage 2 adds ``"anchor_features"``, its frozen stage-1 head's).
        latent: the continuous latent ``[B, D, frames]`` of a continuous codec, or the quantized
            latent an envelope codec's decoder read; else None.
        pitch: a pitch-rendering decoder's predictions (``source: harmonic``), which the trainer
            compares with pitch targets of the input: ``{"f0": [B, frames] Hz,
            "voiced_logit": [B, frames]}``; empty otherwise.
    """

    audio: torch.Tensor | None
    codes: torch.Tensor
    n_q: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    semantic: dict[str, torch.Tensor] = field(default_factory=dict)
    latent: torch.Tensor | None = None
    pitch: dict[str, torch.Tensor] = field(default_factory=dict)


class Codec(PersistedCodec, nn.Module, abc.ABC):
    """Abstract speech codec: waveform in, a latent ``[B, latent_dim, frames]`` out, and back.

    This is what every codec has (the latent interface, as Moshi's ``CompressionModel``
    ``encode_to_latent`` / ``decode_latent``): a token codec's latent is its encoder output before
    the quantizer, a continuous codec's latent is its bottleneck. Every codec also states its
    codebooks (:attr:`codebook_sizes`, :attr:`num_codebooks`, :attr:`num_semantic_codebooks`: none
    for a codec without codes); the operations on codes (``encode``, ``decode``, ``bitrate``,
    ``n_q``, streaming) are in :class:`TokenCodec` only.
    """

    codec_name: ClassVar[str] = "abstract"
    #: True for a codec that has no codes (its bottleneck is a continuous latent, e.g.
    #: :class:`hasrd.codecs.ContinuousCodec`), False for every :class:`TokenCodec`: always
    #: ``not isinstance(codec, TokenCodec)``, which is the check new code should use. Kept as a class
    #: attribute for the callers that branch on it (the CLI's ``.hsrl`` files, the trainer, the evaluator).
    continuous: ClassVar[bool] = True
    supports_causal: ClassVar[bool] = False  # may this variant be built with ``causal: true``

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        # a plain, JSON-safe copy; from from_config, the tracker it passes (the same object as the
        # argument, so reads through either count: hasrd.codecs.config_keys)
        self.config = config if isinstance(config, ReadTracker) else json.loads(json.dumps(config))
        self._fingerprint: str | None = None
        self._inference_only = False  # set by prepare_for_inference
        if self.config.get("causal") and not self.supports_causal:
            raise ValueError(f"codec {self.codec_name!r} has no causal variant (model.causal)")

    # ---- static description -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abc.abstractmethod
    def hop_length(self) -> int:
        """Waveform samples per latent (and code) frame."""

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    @abc.abstractmethod
    def latent_dim(self) -> int:
        """Channels ``D`` of the latent :meth:`encode_to_latent` gives and :meth:`decode_latent` takes."""

    # the codebook description: facts every codec states, true for one without codebooks too (no
    # codebooks, none semantic); the operations on codes (encode, bitrate, n_q...) are TokenCodec's
    @property
    def codebook_sizes(self) -> list[int]:
        """Entries of each codebook, semantic ones first (``[]``: a codec without codes)."""
        return []

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def num_semantic_codebooks(self) -> int:
        return 0

    def latent_bitrate(self, bits_per_value: int = 16) -> float:
        """Bits/s of the latent sent at ``bits_per_value`` bits a value (``.hsrl`` files: 16):
        ``frame_rate * latent_dim * bits_per_value``."""
        return float(self.frame_rate) * self.latent_dim * int(bits_per_value)

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    def pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad ``[B, 1, T]`` with zeros to a whole number of frames."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected waveform [B, 1, T], got {tuple(wav.shape)}")
        pad = self.num_frames(wav.shape[-1]) * self.hop_length - wav.shape[-1]
        return nn.functional.pad(wav, (0, pad)) if pad else wav

    # ---- the work -------------------------------------------------------------------------
    @abc.abstractmethod
    def encode_to_latent(self, wav: torch.Tensor, quantize: bool = False, n_q: int | None = None) -> torch.Tensor:
        """``[B, 1, T]`` at :attr:`sample_rate` -> float ``[B, latent_dim, ceil(T / hop_length)]``
        (no gradients; training goes through :meth:`forward`).

        ``quantize=False``: the latent before any quantization. ``quantize=True``: the latent the
        decoder gets from what the codec stores: for a token codec the latent after its quantizer
        with ``n_q`` codebooks (default all), for a continuous codec its storage rounding.
        ``n_q`` is for ``quantize=True`` of a token codec only (else a ValueError).
        """

    @abc.abstractmethod
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """float ``[B, latent_dim, F]`` -> ``[B, 1, F * hop_length]`` (no gradients)."""

    def _check_latent(self, latent: torch.Tensor) -> None:
        if not latent.is_floating_point():
            raise TypeError(f"a latent is a float tensor, got {latent.dtype}")
        if latent.dim() != 3 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"expected a latent [B, {self.latent_dim}, frames], got {tuple(latent.shape)}")

    @abc.abstractmethod
    def forward(self, wav: torch.Tensor, n_q: torch.Tensor | int | None = None) -> CodecOutput:
        """Training/analysis pass; ``n_q`` may be a per-item ``LongTensor[B]`` (token codecs).

        In training mode a token codec draws per-item ``n_q`` itself (quantizer dropout) when
        ``n_q`` is None. In eval mode ``forward(x, n).audio`` equals ``decode(encode(x, n))``
        (a continuous codec: ``decode_latent(encode_to_latent(x))``).
        """

    # ---- latency (streaming itself is a token codec's: TokenCodec.stream_encoder) --------------
    @property
    def causal(self) -> bool:
        """Built with ``model.causal: true``: output up to sample ``t`` needs input up to ``t``'s frame only."""
        return bool(self.config.get("causal", False))

    @property
    def lookahead_samples(self) -> int | None:
        """Input samples past the end of a frame that its codes and audio depend on.

        0 for a causal codec; ``None`` for an offline one (its convolutions look ahead by their
        receptive field, and an SSL encoder attends over the whole input).
        """
        return 0 if self.causal else None

    def algorithmic_latency(self) -> float:
        """Seconds between a sample entering :meth:`TokenCodec.stream_encoder` and the same sample
        leaving :meth:`TokenCodec.stream_decoder`, compute time aside: one frame hop plus the lookahead
        (``math.inf`` for a codec that cannot stream)."""
        if self.lookahead_samples is None:
            return math.inf
        return (self.hop_length + self.lookahead_samples) / self.sample_rate

    # ---- inference speed-ups ------------------------------------------------------------------
    def prepare_for_inference(self) -> "Codec":
        """Eval mode, no gradients, weight norm folded into plain weights and the Snake
        activations rewritten with fewer passes (:mod:`hasrd.nn.inference`; outputs unchanged up to
        float rounding, less work per call: codes equal but for float near-ties between two codebook
        entries). Irreversible: the model can no longer be trained or saved (save it before);
        :meth:`fingerprint` keeps the value of the unfolded model."""
        from ..nn import remove_weight_norm
        from ..nn.inference import replace_snakes

        if self._inference_only:
            return self
        self.eval()
        fingerprint = self.fingerprint()
        remove_weight_norm(self)
        replace_snakes(self)  # encoder and decoder
        for p in self.parameters():
            p.requires_grad_(False)
        self._fingerprint, self._inference_only = fingerprint, True
        return self

    def _run_decoder(self, z: torch.Tensor) -> torch.Tensor:
        """``self.decoder(z)``; for a codec prepared for inference, on the CPU, through a frozen
        TorchScript trace of the decoder (made at the first call and kept: the same convolutions,
        with oneDNN weight layouts and folded constants; outputs unchanged, about a sixth faster).
        If tracing fails the plain decoder runs."""
        decoder = self.decoder
        if not self._inference_only or z.device.type != "cpu":
            return decoder(z)
        traced = self.__dict__.get("_traced_decoder")  # kept out of the module tree and state_dict
        if traced is None:
            try:
                # the decoder's Python branches depend on shapes only through conv arithmetic that
                # is the same for every length (tested for other batch sizes and lengths)
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    traced = torch.jit.optimize_for_inference(torch.jit.freeze(
                        torch.jit.trace(decoder, z, check_trace=False).eval()))
            except Exception:  # an op TorchScript cannot trace: keep the eager decoder
                traced = False
            self.__dict__["_traced_decoder"] = traced
        return traced(z) if traced is not False else decoder(z)

    # ---- identity and persistence -----------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of the exact model (config and weights): token files carry it."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.config, sort_keys=True).encode())
            for key, tensor in sorted(self.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def train(self, mode: bool = True):
        if self._inference_only:
            if mode:
                raise RuntimeError("this codec was prepared for inference (weight norm folded); it cannot train")
            return super().train(False)  # weights are frozen: keep the fingerprint
        self._fingerprint = None  # weights may change while training
        return super().train(mode)

    def describe(self) -> dict[str, Any]:
        """The static facts about this codec, as JSON-safe values (for ``hasrd info``, model cards and docs)."""
        return {
            "codec": self.codec_name,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "hop_length": self.hop_length,
            **self._codebook_facts(),
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    def _codebook_facts(self) -> dict[str, Any]:
        """The codebook fields of :meth:`describe`: one record layout for every codec (a codec
        without codes: 0 codebooks, no bitrates)."""
        return {
            "num_codebooks": self.num_codebooks,
            "num_semantic_codebooks": self.num_semantic_codebooks,
            "codebook_sizes": list(self.codebook_sizes),
            "bitrates": {},
        }

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights saved by :meth:`save_pretrained` (subclasses may drop training-only parts)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    @classmethod
    def from_config(cls, config: dict[str, Any], strict: bool = False) -> "Codec":
        """The codec of a ``model`` config; ``strict``: a ValueError naming a key the codec did not
        read while building itself (a misspelt or unknown setting)."""
        tracked = ReadTracker(json.loads(json.dumps(config)))
        codec = cls(tracked)
        unread = [k for k in unread_keys(tracked) if k.split(".")[0] not in OUTSIDE_KEYS]
        codec.config = plain(codec.config)
        if strict and unread:
            near = nearest_read(tracked, unread[0])
            raise ValueError(f"model.{unread[0]}: unknown setting" + (f"; did you mean model.{near}?" if near else
                             f" (codec {codec.codec_name!r} does not read it)"))
        return codec

    def _freeze(self, names, parts: tuple[str, ...], always: tuple[str, ...] = ()) -> list[str]:
        """``model.freeze``: no gradients for the named parts (plus ``always``); unknown names are a
        ValueError naming ``parts``. Returns the frozen parts, sorted."""
        unknown = set(names) - set(parts)
        if unknown:
            raise ValueError(f"model.freeze names unknown parts {sorted(unknown)}; use {list(parts)}")
        frozen = sorted(set(names) | set(always))
        for name in frozen:
            getattr(self, name).requires_grad_(False)
        return frozen

    def is_optional_weight(self, key: str) -> bool:
        """Weights that :meth:`inference_state_dict` may leave out (training-only heads)."""
        return False

    def prepare_training(self, warm_start_keys: set[str] | None) -> str | None:
        """Called by the trainer once the starting weights are in place (not on a resume).

        ``warm_start_keys``: the weight names ``train.init_from`` loaded, or None without a warm
        start. Returns a line for the log, or None; raises ValueError if the model cannot start
        training from there. The default does nothing.
        """
        return None


class TokenCodec(Codec):
    """A codec whose bottleneck is a residual vector quantizer: the latent interface of
    :class:`Codec` plus integer codes (see the module docstring for the code layout).

    Subclasses implement the codebook description, :meth:`encode` / :meth:`decode` (the token
    path the CLI, token files and golden tests use), the unquantised latent
    (:meth:`_encoder_latent`) and the bridge :meth:`_latent_to_codes` / :meth:`_codes_to_latent`;
    the public latent methods are built from those here.
    """

    continuous: ClassVar[bool] = False

    # ---- codebooks --------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def codebook_sizes(self) -> list[int]: ...

    @property
    @abc.abstractmethod
    def num_semantic_codebooks(self) -> int: ...

    def bitrate(self, n_q: int | None = None) -> float:
        return bitrate(self.frame_rate, self.codebook_sizes, self.num_codebooks if n_q is None else n_q)

    def n_q_for_bitrate(self, bps: float) -> int:
        """The largest ``n_q`` whose nominal bitrate does not exceed ``bps``."""
        best = None
        for n in range(1, self.num_codebooks + 1):
            if self.bitrate(n) <= bps + 1e-6:
                best = n
        if best is None:
            raise ValueError(
                f"{bps:g} bps is below this model's lowest bitrate ({self.bitrate(1):g} bps at n_q=1)"
            )
        return best

    def check_n_q(self, n_q: int | None) -> int:
        if n_q is None:
            return self.num_codebooks
        if not isinstance(n_q, int) or not 1 <= n_q <= self.num_codebooks:
            raise ValueError(f"n_q must be an integer in 1..{self.num_codebooks}, got {n_q!r}")
        return n_q

    def n_q_per_item(self, n_q, batch: int, dropout: float, device) -> torch.Tensor:
        """A training forward's ``n_q`` as ``LongTensor[batch]``: ``None`` draws quantizer dropout
        (``dropout``) in training mode and keeps every codebook otherwise; an int is checked and
        repeated; a tensor is kept (moved to ``device``)."""
        if n_q is None:
            if self.training:
                from ..quantize import sample_n_q

                return sample_n_q(batch, self.num_codebooks, dropout, device)
            n_q = self.num_codebooks
        if isinstance(n_q, int):
            n_q = torch.full((batch,), self.check_n_q(n_q), dtype=torch.long, device=device)
        return n_q.to(device)

    def _codebook_facts(self) -> dict[str, Any]:
        return {**super()._codebook_facts(), "bitrates": {n: self.bitrate(n) for n in range(1, self.num_codebooks + 1)}}

    # ---- codes ------------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """``[B, 1, T]`` at :attr:`sample_rate` -> ``LongTensor[B, n_q, ceil(T / hop_length)]``."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``LongTensor[B, n_q, F]`` (any ``1 <= n_q <= num_codebooks``) -> ``[B, 1, F * hop_length]``."""

    # ---- the latent, and the bridge between latent and codes -----------------------------------
    @abc.abstractmethod
    def _encoder_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """The latent before quantization of a waveform already padded to whole frames."""

    @abc.abstractmethod
    def _latent_to_codes(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        """The quantizer's codes ``[B, n_q, F]`` of ``latent`` (``n_q`` checked)."""

    @abc.abstractmethod
    def _codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """The quantized latent ``[B, latent_dim, F]`` of ``codes`` (``n_q`` checked)."""

    @abc.abstractmethod
    def _run_latent_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim, F]`` -> ``[B, 1, F * hop]`` (the layers :meth:`decode` runs after the lookup)."""

    @torch.no_grad()
    def encode_to_latent(self, wav: torch.Tensor, quantize: bool = False, n_q: int | None = None) -> torch.Tensor:
        """See :meth:`Codec.encode_to_latent`; ``quantize=True`` is
        ``codes_to_latent(encode(wav, n_q))``, so ``decode_latent`` of it is ``decode(encode(wav, n_q))``."""
        if n_q is not None and not quantize:
            raise ValueError("n_q picks the codebooks of the quantized latent: pass quantize=True with it")
        latent = self._encoder_latent(self.pad_to_hop(wav))
        return self.quantize_latent(latent, n_q) if quantize else latent

    @torch.no_grad()
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """float ``[B, latent_dim, F]`` (quantized or not) -> ``[B, 1, F * hop_length]``: the codec's
        decoder on that latent (for a latent before quantization: the unquantised bound)."""
        self._check_latent(latent)
        return self._run_latent_decoder(latent)

    @torch.no_grad()
    def latent_to_codes(self, latent: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """float ``[B, latent_dim, F]`` -> ``LongTensor[B, n_q, F]``, the quantizer's codes of the first
        ``n_q`` codebooks (default all): ``latent_to_codes(encode_to_latent(x), n) == encode(x, n)``."""
        self._check_latent(latent)
        return self._latent_to_codes(latent, self.check_n_q(n_q))

    @torch.no_grad()
    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """``LongTensor[B, n_q, F]`` -> the quantized latent ``[B, latent_dim, F]`` that :meth:`decode`
        decodes (codebooks a prefix leaves out contribute zeros)."""
        self.check_n_q(int(codes.shape[1]))
        return self._codes_to_latent(codes.long())

    @torch.no_grad()
    def quantize_latent(self, latent: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """``codes_to_latent(latent_to_codes(latent, n_q))``: ``latent`` through the quantizer."""
        return self.codes_to_latent(self.latent_to_codes(latent, n_q))

    # ---- streaming (see docs/streaming.md and hasrd/streaming.py) ------------------------------
    def stream_encoder(self, n_q: int | None = None):
        """A :class:`hasrd.streaming.StreamEncoder`: ``push(audio chunk)`` -> codes of the whole
        frames completed so far, ``flush()`` -> the last, zero-padded frame."""
        from ..streaming import StreamEncoder

        return StreamEncoder(self, n_q)

    def stream_decoder(self):
        """A :class:`hasrd.streaming.StreamDecoder`: ``push(codes[B, n_q, f])`` -> ``[B, 1, f * hop]``."""
        from ..streaming import StreamDecoder

        return StreamDecoder(self)

    def _stream_encode_step(self, wav: torch.Tensor, n_q: int, state: Any):
        """``(codes [B, n_q, f] or None, state)`` for the next audio piece (causal codecs implement it)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def _stream_decode_step(self, codes: torch.Tensor, state: Any):
        """``(audio [B, 1, f * hop], state)`` for the next ``f`` frames (causal codecs implement it)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")
