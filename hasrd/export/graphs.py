"""Export-friendly copies of a codec's encoder and decoder paths, in plain torch ops.

``vector_quantize_pytorch.VectorQuantize`` is written for training (einops rearranges, k-means
initialisation, EMA hooks, optional multi-head and cosine variants) and does not go through the
ONNX exporters as it is. Here every codebook becomes a :class:`VQStage` holding the trained
codebook ``[K, d]`` (read from the model) and the library's ``project_in`` / ``project_out``
layers, and does, with ordinary tensor ops, exactly what the library does at inference:

* nearest neighbour: the library's own distance expression
  ``sqrt(clamp(|x|^2 + |e|^2 - 2 x.e, 1e-8))`` followed by an arg-min (first index on ties, as
  the library's arg-max of the negated distance), so the codes are the same as ``codec.encode``;
* lookup: ``embedding(codes, codebook)`` then ``project_out``.

The codec itself is rebuilt from its config and weights (never deep-copied: weight-normed layers
that have run a training step cannot be), put in eval mode, and its weight norms (both the old
hook kind DAC uses and ``torch.nn.utils.parametrizations``) are folded into plain weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..codecs.base import Codec, TokenCodec
from ..codecs.persist import strip_pretrained

# Largest relative distance margin (see code_margins) at which a code may differ from
# codec.encode's: float32 rounding of the library's distances gives margins around 1e-7.
TIE_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    """A codec (or an option) that cannot be exported, or an export that failed its check."""


def plain_copy(codec: Codec) -> Codec:
    """An eval-mode copy of ``codec`` with weight norms folded and the decoder's Snake activations
    rewritten (and the encoder's too when ``codec`` itself went through ``prepare_for_inference``).

    Works for a codec fresh from training or loading, and for one already put through
    ``prepare_for_inference`` (whose weights are folded already).
    """
    from ..nn.inference import remove_weight_norm, replace_snakes

    copy = type(codec).from_config(strip_pretrained(codec.config))
    folded_source = bool(getattr(codec, "_inference_only", False))
    if folded_source:  # the same modules as the source, so that its state loads (and its codes come out)
        remove_weight_norm(copy)
        replace_snakes(copy)
    missing, unexpected = copy.load_state_dict(codec.state_dict(), strict=False)
    missing = [k for k in missing if not copy.is_optional_weight(k)]
    if missing or unexpected:
        raise ExportError(f"cannot rebuild the codec for export (missing {missing[:3]}, unexpected {unexpected[:3]})")
    copy.eval()
    if not folded_source:
        remove_weight_norm(copy)
        # the decoder only: the encoder keeps the source's Snake, so the exported codes are the
        # source's own (the encoder's rewrite could flip a code at a float near-tie)
        replace_snakes(getattr(copy, "decoder", None))
    for p in copy.parameters():
        p.requires_grad_(False)
    return copy


class VQStage(nn.Module):
    """One ``VectorQuantize`` codebook as plain ops (Euclidean, one head; see the module doc)."""

    def __init__(self, vq: nn.Module, name: str):
        super().__init__()
        book = vq._codebook
        problems = []
        if getattr(vq, "heads", 1) != 1:
            problems.append("several heads")
        if getattr(vq, "use_cosine_sim", False):
            problems.append("cosine-similarity codebooks")
        if getattr(book, "affine_param", False):
            problems.append("affine codebook parameters")
        if getattr(book, "vq_bridge", None) is not None:
            problems.append("a vq bridge")
        if problems:
            raise ExportError(f"{name}: cannot export a codebook with {', '.join(problems)}")
        initted = getattr(book, "initted", None)
        if initted is not None and not bool(initted):
            raise ExportError(f"{name}: codebook not initialised (k-means init happens on the first training batch)")
        embed = book.embed.detach()
        if embed.dim() != 3 or embed.shape[0] != 1:
            raise ExportError(f"{name}: unexpected codebook shape {tuple(embed.shape)}")
        self.register_buffer("embed", embed[0].float().clone())  # [K, d]
        self.project_in = vq.project_in
        self.project_out = vq.project_out
        self.eps = 1e-8  # the library's cdist clamp

    @property
    def codebook_size(self) -> int:
        return int(self.embed.shape[0])

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D, F]`` latent -> ``LongTensor[B, F]`` indices of the nearest codebook entries."""
        h = self.project_in(x.transpose(1, 2)).float()  # [B, F, d]
        # the same expression, operand order and shapes as the library's cdist, so that torch
        # gives bit-identical distances: all frames of the batch as one [1, B*F, d] matrix
        flat = h.reshape(1, -1, h.shape[-1])
        embed = self.embed.unsqueeze(0)  # [1, K, d]
        x2 = (flat ** 2).sum(-1).unsqueeze(-1)  # [1, B*F, 1]
        e2 = (embed ** 2).sum(-1).unsqueeze(1)  # [1, 1, K]
        xe = torch.einsum("bid,bjd->bij", flat, embed) * -2  # [1, B*F, K]
        dist = (x2 + e2 + xe).clamp(min=self.eps).sqrt()
        return dist.argmin(dim=-1).reshape(h.shape[0], h.shape[1])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """``LongTensor[B, F]`` -> quantized latent ``[B, D, F]``."""
        return self.project_out(F.embedding(idx, self.embed)).transpose(1, 2)


def _stages(rvq: nn.Module | None, prefix: str) -> list[VQStage]:
    if rvq is None:
        return []
    return [VQStage(layer, f"{prefix}{i + 1}") for i, layer in enumerate(rvq.layers)]


def _residual_codes(stages, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Residual quantization through ``stages``: (indices, quantized outputs) per stage."""
    codes, outs, residual = [], [], x
    for stage in stages:
        idx = stage.nearest(residual)
        q = stage.lookup(idx)
        residual = residual - q
        codes.append(idx)
        outs.append(q)
    return codes, outs


def _pad_to_hop(wav: torch.Tensor, hop: int) -> torch.Tensor:
    T = wav.shape[-1]
    frames = (T + hop - 1) // hop
    return F.pad(wav, (0, frames * hop - T))


class EncoderGraph(nn.Module):
    """``wav [B, 1, T]`` -> ``codes LongTensor[B, n_q, ceil(T / hop)]``, as ``codec.encode(wav, n_q)``."""

    def __init__(self, codec: Codec, n_q: int):
        super().__init__()
        self.kind = codec.codec_name
        self.hop = int(codec.hop_length)
        self.n_q = n_q
        q = codec.quantizer
        self.n_semantic = int(q.n_semantic)
        self.semantic = nn.ModuleList(_stages(q.semantic, "semantic"))
        self.acoustic = nn.ModuleList(_stages(q.acoustic, "acoustic"))
        if self.kind == "hasrd":
            self.encoder = codec.encoder
        elif self.kind == "hcodec":
            self.semantic_encoder = codec.semantic_encoder
            self.semantic_down = codec.semantic_down
            self.acoustic_encoder = codec.acoustic_encoder
        else:  # pragma: no cover - guarded by supported()
            raise ExportError(f"no ONNX export for codec {self.kind!r}")

    def stage_inputs(self, wav: torch.Tensor, codes: torch.Tensor) -> list[torch.Tensor]:
        """The projected input ``[B, F, d]`` each codebook sees when the earlier codebooks chose
        ``codes`` (whatever produced them): what :func:`code_margins` checks against."""
        x = _pad_to_hop(wav, self.hop)
        stages = list(self.semantic) + list(self.acoustic)
        inputs = []

        def walk(first: int, count: int, latent: torch.Tensor) -> torch.Tensor:
            residual, total = latent, None
            for i in range(first, first + count):
                stage = stages[i]
                inputs.append(stage.project_in(residual.transpose(1, 2)).float())
                q = stage.lookup(codes[:, i])
                residual = residual - q
                total = q if total is None else total + q
            return total

        n_sem = min(self.n_q, self.n_semantic)
        n_ac = max(self.n_q - self.n_semantic, 0)
        if self.kind == "hasrd":
            z = self.encoder(x)
            total = walk(0, n_sem, z)
            if n_ac:
                walk(self.n_semantic, n_ac, z - total)
        else:
            walk(0, n_sem, self.semantic_down(self.semantic_encoder(x)))
            if n_ac:
                walk(self.n_semantic, n_ac, self.acoustic_encoder(x))
        return inputs

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = _pad_to_hop(wav, self.hop)
        n_sem = min(self.n_q, self.n_semantic)
        n_ac = max(self.n_q - self.n_semantic, 0)
        if self.kind == "hasrd":
            z = self.encoder(x)
            codes, outs = _residual_codes(self.semantic[:n_sem], z)
            if n_ac:
                # as HierarchicalQuantizer.encode: the acoustic stages see the latent minus the
                # *sum* of the semantic outputs (summed in codebook order)
                total = outs[0]
                for q in outs[1:]:
                    total = total + q
                codes += _residual_codes(self.acoustic[:n_ac], z - total)[0]
        else:
            z_s = self.semantic_down(self.semantic_encoder(x))
            codes, _ = _residual_codes(self.semantic[:n_sem], z_s)
            if n_ac:
                codes += _residual_codes(self.acoustic[:n_ac], self.acoustic_encoder(x))[0]
        return torch.stack(codes, dim=1)


def code_margins(graph: EncoderGraph, wav: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """How far from optimal each code is, given the codes before it: ``[B, n_q, F]`` float64.

    For codebook ``i`` with input ``h`` (from :meth:`EncoderGraph.stage_inputs`) and entries
    ``e_k``, the margin of the chosen ``c`` is ``(|h - e_c|^2 - min_k |h - e_k|^2) / (|h|^2 + |e_c|^2)``,
    computed in float64 by direct differences (the denominator has a floor of
    ``1e-8 / TIE_TOLERANCE``: the library clamps squared distances at 1e-8, so for it all entries
    within that of a tiny latent tie). ``codec.encode`` itself computes the distances in float32 by
    the expanded formula ``|h|^2 + |e|^2 - 2 h.e``, whose rounding error is of order 1e-7 on this
    scale; so a correct encoder has margins of that order (zero almost everywhere), and two correct
    encoders (torch and onnxruntime, whose convolutions round differently) may only disagree where
    two entries are that close: a near tie (margin <= TIE_TOLERANCE).
    """
    stages = list(graph.semantic) + list(graph.acoustic)
    order = list(range(min(graph.n_q, graph.n_semantic))) + list(
        range(graph.n_semantic, graph.n_semantic + max(graph.n_q - graph.n_semantic, 0))
    )
    with torch.no_grad():
        inputs = graph.stage_inputs(wav, codes)
        out = []
        for row, (i, h) in enumerate(zip(order, inputs)):
            h64 = h.double()
            e64 = stages[i].embed.double()
            stage_eps = stages[i].eps
            d2 = ((h64.unsqueeze(-2) - e64) ** 2).sum(-1)  # [B, F, K]
            chosen = codes[:, row].unsqueeze(-1)
            gap = d2.gather(-1, chosen).squeeze(-1) - d2.min(-1).values
            scale = (h64 ** 2).sum(-1) + (e64[codes[:, row]] ** 2).sum(-1)
            # the library clamps squared distances at 1e-8 (stage.eps) before comparing them, so
            # gaps below that are ties for it too: the floor of the scale counts them as such
            out.append(gap / (scale + stage_eps / TIE_TOLERANCE))
    return torch.stack(out, dim=1)


class DecoderGraph(nn.Module):
    """``codes LongTensor[B, n, F]`` (any ``1 <= n <= num_codebooks``) -> ``wav [B, 1, F * hop]``.

    The codes are padded to all codebooks with zeros and the padded rows are masked out, so one
    graph serves every ``n``; adding the masked (zero) rows leaves the sums bit-identical to
    ``codec.decode``, which only sums the rows it has.
    """

    def __init__(self, codec: Codec):
        super().__init__()
        self.kind = codec.codec_name
        q = codec.quantizer
        self.n_semantic = int(q.n_semantic)
        self.num_codebooks = int(codec.num_codebooks)
        self.semantic = nn.ModuleList(_stages(q.semantic, "semantic"))
        self.acoustic = nn.ModuleList(_stages(q.acoustic, "acoustic"))
        self.decoder = codec.decoder
        if self.kind == "hcodec":
            self.fusion = codec.fusion
            self.acoustic_dim = int(q.acoustic.dim) if q.acoustic is not None else 0

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        n = codes.shape[1]
        full = F.pad(codes, (0, 0, 0, self.num_codebooks - n))
        keep = (torch.arange(self.num_codebooks, device=codes.device) < n).to(torch.float32)
        parts = []
        for i, stage in enumerate(list(self.semantic) + list(self.acoustic)):
            parts.append(stage.lookup(full[:, i]) * keep[i])
        sem = parts[0]
        for q in parts[1:self.n_semantic]:
            sem = sem + q
        ac = None
        if len(parts) > self.n_semantic:
            ac = parts[self.n_semantic]
            for q in parts[self.n_semantic + 1:]:
                ac = ac + q
        if self.kind == "hasrd":
            return self.decoder(sem if ac is None else sem + ac)
        if ac is None:
            ac = sem.new_zeros(sem.shape[0], self.acoustic_dim, sem.shape[-1])
        return self.decoder(self.fusion(torch.cat([sem, ac], dim=1)))


SUPPORTED = ("hasrd", "hcodec")


def build_graphs(codec: Codec, n_q: int | None = None) -> tuple[EncoderGraph, DecoderGraph]:
    """The encoder (``n_q`` codebooks; default all) and decoder graphs of a plain copy of ``codec``."""
    if not isinstance(codec, TokenCodec):
        raise ExportError(f"{codec.codec_name} is a continuous codec (no codes): the ONNX export covers "
                          f"codebook codecs ({', '.join(SUPPORTED)})")
    if codec.codec_name not in SUPPORTED:
        raise ExportError(f"no ONNX export for codec {codec.codec_name!r}; supported: {', '.join(SUPPORTED)}")
    n_q = codec.num_codebooks if n_q is None else n_q
    if isinstance(n_q, bool) or not isinstance(n_q, int) or not 1 <= n_q <= codec.num_codebooks:
        raise ExportError(f"n_q must be an integer in 1..{codec.num_codebooks}, got {n_q!r}")
    copy = plain_copy(codec)
    return EncoderGraph(copy, n_q).eval(), DecoderGraph(copy).eval()


def probe_audio(seconds: float, sample_rate: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """A deterministic voiced, amplitude-modulated test signal ``[batch, 1, T]`` (for checks)."""
    g = torch.Generator().manual_seed(seed)
    T = int(round(seconds * sample_rate))
    t = torch.arange(T, dtype=torch.float64) / sample_rate
    out = []
    for b in range(batch):
        f0 = 100 + 25 * b + 30 * torch.sin(2 * math.pi * 1.3 * t)
        phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
        x = sum(torch.sin(k * phase) / k for k in range(1, 8)) * (0.4 + 0.3 * torch.sin(2 * math.pi * 3.7 * t))
        x = 0.25 * x / x.abs().max().clamp_min(1e-9) + 0.005 * torch.randn(T, generator=g, dtype=torch.float64)
        out.append(x)
    return torch.stack(out).unsqueeze(1).float()
