"""The 25 Hz dual-stream codec (H-Codec style): an acoustic branch and a semantic branch.

Data flow (``hop`` = 640 samples at 16 kHz, so 25 frames per second)::

    wav -> conv encoder (acoustic branch)            -> z_a [B,Da,F] -> acoustic RVQ -> q_a
    wav -> SSL encoder (50 Hz) -> learned 2x down-sampling -> z_s [B,Ds,F] -> semantic RVQ -> q_s
    q_s -> semantic head -> reconstructed SSL/teacher features (distillation)
    [q_s ; q_a] -> fusion conv -> generator -> wav

Codebooks are numbered semantic first (``n_semantic`` of them), then acoustic; ``n_q`` takes a
prefix, so ``n_q <= n_semantic`` decodes from the semantic stream alone (acoustic latent zero).
"""
from __future__ import annotations

import torch
from torch import nn

from ..decoders import build_generator
from ..quantize import HierarchicalQuantizer, sample_n_q
from .base import CodecOutput, TokenCodec
from .parts import FrameDownsample, SemanticHead, build_encoder, quantizer_kwargs
from .registry import register_codec


@register_codec("hcodec")
class DualStreamCodec(TokenCodec):
    def __init__(self, config: dict):
        super().__init__(config)
        cfg = self.config
        self._sample_rate = int(cfg["sample_rate"])
        Da, Ds = int(cfg["acoustic_dim"]), int(cfg["semantic_dim"])
        self._branch_dims = (Ds, Da)  # the latent: semantic channels, then acoustic ones
        self.acoustic_encoder = build_encoder(cfg["acoustic_encoder"], Da)
        self.semantic_encoder = build_encoder(cfg["semantic_encoder"], Ds)
        if hasattr(self.semantic_encoder, "arch_config"):
            self.config["semantic_encoder"]["config"] = self.semantic_encoder.arch_config
        self.decoder = build_generator(cfg["decoder"], int(cfg["fusion_dim"]), hop=self.acoustic_encoder.hop,
                                       sample_rate=int(cfg["sample_rate"]))
        if self.decoder.renders_pitch:
            raise ValueError("decoder.source: a pitch-rendering decoder is supported by the hasrd codec only")
        hop = self.decoder.hop
        if self.acoustic_encoder.hop != hop:
            raise ValueError(f"acoustic encoder hop {self.acoustic_encoder.hop} != decoder hop {hop}")
        if hop % self.semantic_encoder.hop:
            raise ValueError(f"semantic encoder hop {self.semantic_encoder.hop} does not divide the codec hop {hop}")
        factor = hop // self.semantic_encoder.hop
        self.semantic_down = FrameDownsample(Ds, factor) if factor > 1 else nn.Identity()
        q = cfg["quantizer"]
        self.quantizer = HierarchicalQuantizer(
            Ds, Da, int(q["n_semantic"]), int(q["n_acoustic"]), int(q["codebook_size"]),
            residual=False, **quantizer_kwargs(q),
        )
        self.dropout = float(q.get("dropout", 0.0))
        self.fusion = nn.Conv1d(Ds + Da, int(cfg["fusion_dim"]), 3, padding=1)
        self.semantic_head = SemanticHead(Ds, **cfg.get("semantic_head", {}))

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        return self.decoder.hop

    @property
    def latent_dim(self) -> int:
        """Semantic plus acoustic channels: the two streams' latents, stacked."""
        return sum(self._branch_dims)

    @property
    def codebook_sizes(self) -> list[int]:
        return self.quantizer.codebook_sizes

    @property
    def num_semantic_codebooks(self) -> int:
        return self.quantizer.n_semantic

    def _latents(self, x: torch.Tensor):
        return self.semantic_down(self.semantic_encoder(x)), self.acoustic_encoder(x)

    def _fuse(self, q_s: torch.Tensor, q_a: torch.Tensor | None) -> torch.Tensor:
        if q_a is None:
            q_a = q_s.new_zeros(q_s.shape[0], self.quantizer.acoustic.dim, q_s.shape[-1])
        return self._run_decoder(self.fusion(torch.cat([q_s, q_a], dim=1)))

    def forward(self, wav: torch.Tensor, n_q=None) -> CodecOutput:
        T = wav.shape[-1]
        x = self.pad_to_hop(wav)
        B = x.shape[0]
        if n_q is None:
            n_q = sample_n_q(B, self.num_codebooks, self.dropout, x.device) if self.training else self.num_codebooks
        if isinstance(n_q, int):
            n_q = torch.full((B,), self.check_n_q(n_q), dtype=torch.long, device=x.device)
        z_s, z_a = self._latents(x)
        sem, ac = self.quantizer(z_s, z_a, n_q=n_q.to(x.device))
        audio = self._fuse(sem.x, ac.x)[..., :T]
        codes = torch.cat([sem.codes, ac.codes], dim=1)
        metrics = {**sem.metrics, **ac.metrics}
        return CodecOutput(audio, codes, n_q, {"vq": sem.penalty + ac.penalty}, metrics, self.semantic_head(sem.x))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        n_q = self.check_n_q(n_q)
        z_s, z_a = self._latents(self.pad_to_hop(wav))
        return self.quantizer.encode(z_s, z_a, n_q=n_q)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self.check_n_q(int(codes.shape[1]))
        q_s, q_a = self.quantizer.decode(codes.long())
        return self._fuse(q_s, q_a)

    # the latent interface (TokenCodec): [z_s; z_a], the semantic latent then the acoustic one on the
    # channel axis, each quantized by its own RVQ; the fusion conv and the generator decode it
    def _split_latent(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_s, z_a = latent.split(list(self._branch_dims), dim=1)
        return z_s.contiguous(), z_a.contiguous()

    def _encoder_latent(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._latents(wav), dim=1)

    def _latent_to_codes(self, latent: torch.Tensor, n_q: int) -> torch.Tensor:
        return self.quantizer.encode(*self._split_latent(latent), n_q=n_q)

    def _codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        q_s, q_a = self.quantizer.decode(codes.long())
        if q_a is None:  # a semantic prefix: the acoustic latent is zero, as decode() fuses it
            q_a = q_s.new_zeros(q_s.shape[0], self._branch_dims[1], q_s.shape[-1])
        return torch.cat([q_s, q_a], dim=1)

    def _run_latent_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        return self._fuse(*latent.split(list(self._branch_dims), dim=1))
