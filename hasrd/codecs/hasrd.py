"""The HASRD codec: one encoder, a semantic first codebook, acoustic residual codebooks, a GAN vocoder.

Data flow (``T`` samples, ``F = T / hop`` frames)::

    wav [B,1,T] -> encoder -> z [B,D,F] -> semantic VQ (codebook 1) -> q_s
                                        -> acoustic RVQ on z - q_s (codebooks 2..N) -> q_a
    q_s -> semantic head -> teacher features / unit logits (distillation, training only)
    q_s + q_a -> generator -> wav [B,1,T]   (an iSTFT generator with ``source: harmonic`` also
                                             predicts F0 and voicing, trained on pitch targets)

With ``causal: true`` the conv encoder and the generator pad on the left only (see
:mod:`hasrd.nn.causal`); the quantizer works frame by frame, so the whole codec is causal and
streams (:meth:`Codec.stream_encoder`, :meth:`Codec.stream_decoder`, docs/streaming.md).
"""
from __future__ import annotations

import torch

from ..decoders import build_generator
from ..nn import stream_step
from ..quantize import HierarchicalQuantizer
from .base import CodecOutput, TokenCodec
from .parts import SemanticHead, build_encoder, quantizer_kwargs
from .registry import register_codec

#: parts that ``model.freeze`` may name
PARTS = ("encoder", "quantizer", "semantic_head", "decoder")


@register_codec("hasrd")
class HASRDCodec(TokenCodec):
    """See the module docstring; ``config`` is the ``model`` section of a hasrd config."""

    supports_causal = True

    def __init__(self, config: dict):
        super().__init__(config)
        cfg = self.config
        self._sample_rate = int(cfg["sample_rate"])
        D = int(cfg["latent_dim"])
        causal = bool(cfg.get("causal", False))
        self.encoder = build_encoder(cfg["encoder"], D, causal=causal)
        if hasattr(self.encoder, "arch_config"):
            # store the resolved architecture so save_pretrained rebuilds it without the hub
            self.config["encoder"]["config"] = self.encoder.arch_config
        q = cfg["quantizer"]
        self.quantizer = HierarchicalQuantizer(
            D, D, int(q.get("n_semantic", 1)), int(q["n_acoustic"]), int(q["codebook_size"]),
            residual=True, **quantizer_kwargs(q),
        )
        self.dropout = float(q.get("dropout", 0.0))
        self.decoder = build_generator(cfg["decoder"], D, hop=self.encoder.hop, causal=causal,
                                       sample_rate=self._sample_rate)
        if self.encoder.hop != self.decoder.hop:
            raise ValueError(f"encoder hop {self.encoder.hop} != decoder hop {self.decoder.hop}")
        self.semantic_head = SemanticHead(D, **cfg.get("semantic_head", {}))
        # training-only: parts that keep their (warm-start) weights, e.g. a new decoder trained on
        # the codes of a finished model; frozen parts also stay in eval mode (no codebook updates)
        self.frozen = self._freeze(cfg.get("freeze", []), PARTS)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    @property
    def hop_length(self) -> int:
        return self.decoder.hop

    @property
    def latent_dim(self) -> int:
        return int(self.config["latent_dim"])

    @property
    def codebook_sizes(self) -> list[int]:
        return self.quantizer.codebook_sizes

    @property
    def num_semantic_codebooks(self) -> int:
        return self.quantizer.n_semantic

    def forward(self, wav: torch.Tensor, n_q=None) -> CodecOutput:
        T = wav.shape[-1]
        x = self.pad_to_hop(wav)
        n_q = self.n_q_per_item(n_q, x.shape[0], self.dropout, x.device)
        z = self.encoder(x)
        q = self.quantizer.merge(*self.quantizer(z, n_q=n_q))
        zq = q.x
        pitch = {}
        if self.decoder.renders_pitch:
            forced = None
            if self.training and getattr(self.decoder, "pitch_forcing", False):
                from ..losses.pitch import original_pitch

                forced = original_pitch(x, self.sample_rate, self.hop_length)  # one value per latent frame
            audio, pitch = self.decoder(zq, return_pitch=True, pitch=forced)
        else:
            audio = self.decoder(zq)
        audio = audio[..., :T]
        return CodecOutput(audio, q.codes, n_q, {"vq": q.penalty}, q.metrics, self.semantic_head(q.first), pitch=pitch)

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        n_q = self.check_n_q(n_q)
        z = self.encoder(self.pad_to_hop(wav))
        return self.quantizer.encode(z, n_q=n_q)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self.check_n_q(int(codes.shape[1]))
        return self._run_decoder(self._latent(codes))

    def _latent(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantizer.decode_sum(codes.long())

    # the latent interface (TokenCodec): z is the encoder output, the RVQ's input; the decoder takes
    # it quantized (decode) or as it is (the unquantised bound)
    def _encoder_latent(self, wav: torch.Tensor) -> torch.Tensor:
        return self.encoder(wav)

    def _latent_to_codes(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        return self.quantizer.encode(latent, n_q=n_q)

    def _codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        return self._latent(codes)

    def _run_latent_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        return self._run_decoder(latent)

    # streaming: the same layers stepped with their cached left context (hasrd.nn.causal)
    def _stream_encode_step(self, wav: torch.Tensor, n_q: int, state):
        z, state = stream_step(self.encoder.net, wav, state)
        return (None if z is None else self.quantizer.encode(z, n_q=n_q)), state

    def _stream_decode_step(self, codes: torch.Tensor, state):
        return stream_step(self.decoder.net, self._latent(codes), state)
