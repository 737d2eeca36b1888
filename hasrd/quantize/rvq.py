"""Residual vector quantization with a semantic first stage.

Each codebook is a ``vector_quantize_pytorch.VectorQuantize`` (k-means init, EMA codebook updates,
dead-code replacement, straight-through or rotation-trick gradients); this module only chains them
residually, handles per-item quantizer dropout, and reports usage metrics.

Quantizer dropout is done by *masking*, not by skipping: every codebook runs on every item and
an item decoded with ``n_q`` codebooks simply has the contributions of codebooks ``>= n_q`` zeroed.
Every rank of a multi-process run therefore executes the same modules on every step, so
gradient all-reduce and the library's codebook synchronisation stay correct under DDP, whatever
number of codebooks each item drew.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from vector_quantize_pytorch import VectorQuantize


@dataclass
class QuantizerOutput:
    """Result of a quantizer pass.

    Attributes:
        x: quantized latent ``[B, D, F]`` summed over the codebooks each item kept.
        codes: ``LongTensor[B, n, F]`` for all ``n`` codebooks of this quantizer.
        penalty: commitment/codebook loss (scalar), averaged over codebooks.
        metrics: per-codebook usage and normalised perplexity (scalars).
        first: the output of the first codebook alone ``[B, D, F]`` (the semantic stage).
    """

    x: torch.Tensor
    codes: torch.Tensor
    penalty: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    first: torch.Tensor | None = None


def codebook_metrics(codes: torch.Tensor, codebook_size: int, prefix: str) -> dict[str, torch.Tensor]:
    """Usage (fraction of codes used in the batch) and perplexity / K of one codebook's indices.

    The perplexity is normalised by ``K``: 1.0 means all codes used evenly, near 0 a dead codebook.
    """
    flat = codes.reshape(-1)
    counts = torch.bincount(flat, minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-10))).sum()
    return {
        f"{prefix}/usage": (counts > 0).float().mean(),
        f"{prefix}/perplexity": torch.exp(entropy) / codebook_size,
        f"{prefix}/entropy_norm": entropy / math.log(codebook_size),
    }


class ResidualQuantizer(nn.Module):
    """``n_q`` VectorQuantize stages, each quantizing what the previous ones left over.

    Args:
        dim: latent channels.
        n_q: number of codebooks.
        codebook_size: entries per codebook.
        codebook_dim: low-dimensional code space (factorised codes, projected in and out); ``None``
            quantizes in ``dim`` directly.
        decay: EMA decay of the codebooks.
        kmeans_init: initialise each codebook with k-means on the first batch.
        threshold_ema_dead_code: codes whose EMA cluster size falls below this are replaced by
            random vectors of the current batch.
        commitment_weight: weight of the commitment term inside the library's loss.
        rotation_trick: use the rotation trick instead of the plain straight-through estimator.
        name: prefix of the logged metrics.

    Dead codes: in training mode each forward also reports ``<name><i>/dead``, the number of codes
    that no item on any process has selected during the last :attr:`dead_window` training steps
    (0 until that many steps have passed). It is counted from the selected indices, not from the
    library's EMA ``cluster_size``: with ``threshold_ema_dead_code > 0`` the library resets a code
    whose EMA size fell below the threshold to exactly the threshold within the same step, so after
    any step no code sits below it. The counter is not saved (it restarts after a resume).
    """

    dead_window: int = 100

    def __init__(
        self,
        dim: int,
        n_q: int,
        codebook_size: int = 1024,
        codebook_dim: int | None = None,
        decay: float = 0.99,
        kmeans_init: bool = True,
        threshold_ema_dead_code: float = 2.0,
        commitment_weight: float = 1.0,
        rotation_trick: bool = False,
        name: str = "rvq",
    ):
        super().__init__()
        self.dim, self.n_q, self.codebook_size, self.name = dim, n_q, codebook_size, name
        self.layers = nn.ModuleList(
            VectorQuantize(
                dim=dim,
                codebook_size=codebook_size,
                codebook_dim=codebook_dim,
                decay=decay,
                kmeans_init=kmeans_init,
                kmeans_iters=10,
                threshold_ema_dead_code=threshold_ema_dead_code,
                commitment_weight=commitment_weight,
                rotation_trick=rotation_trick,
                straight_through=False,
                channel_last=False,
            )
            for _ in range(n_q)
        )
        # steps since each code was last selected (training metric only; not in the state dict)
        self.register_buffer("steps_unused", torch.zeros(n_q, codebook_size, dtype=torch.long), persistent=False)

    def _check_initialised(self) -> None:
        # vector-quantize-pytorch runs k-means on the first batch it sees, training or not; a model
        # must never change its codebooks while encoding, so eval mode refuses a codebook that has
        # not been through a training step yet.
        if not self.training:
            for i, layer in enumerate(self.layers):
                initted = getattr(layer._codebook, "initted", None)
                if initted is not None and not bool(initted):
                    raise RuntimeError(
                        f"{self.name}{i + 1}: codebook not initialised (k-means init happens on the "
                        "first training batch); train the model or set kmeans_init: false"
                    )

    def forward(self, x: torch.Tensor, n_q: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantize ``[B, D, F]``; ``n_q`` (``LongTensor[B]``, values 0..n) masks later codebooks per item."""
        self._check_initialised()
        B = x.shape[0]
        if n_q is None:
            n_q = torch.full((B,), self.n_q, dtype=torch.long, device=x.device)
        residual = x
        out = torch.zeros_like(x)
        codes, penalties, metrics, first = [], [], {}, None
        for i, layer in enumerate(self.layers):
            q, idx, loss = layer(residual)
            keep = (n_q > i).to(x.dtype).view(B, 1, 1)
            out = out + q * keep
            # q carries a straight-through gradient, so the next residual has none with respect
            # to this one: d(out)/d(x) is exactly the identity, whatever the number of stages.
            residual = residual - q
            codes.append(idx)
            penalties.append(loss.mean())
            if i == 0:
                first = q
            metrics.update(codebook_metrics(idx, self.codebook_size, f"{self.name}{i + 1}"))
        penalty = torch.stack(penalties).mean() if penalties else x.new_zeros(())
        if self.training and codes:
            for i, n in enumerate(self._count_dead(codes)):
                metrics[f"{self.name}{i + 1}/dead"] = n
        return QuantizerOutput(out, torch.stack(codes, dim=1), penalty, metrics, first)

    @torch.no_grad()
    def _count_dead(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Update :attr:`steps_unused` with this step's indices (all processes); dead codes per codebook."""
        used = torch.stack([torch.bincount(c.reshape(-1), minlength=self.codebook_size)[: self.codebook_size] > 0
                            for c in codes])
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            flags = used.to(torch.int32)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            used = flags > 0
        self.steps_unused.add_(1).masked_fill_(used, 0)
        return (self.steps_unused >= self.dead_window).sum(-1).float()

    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        """Indices ``[B, n_q, F]`` of the first ``n_q`` codebooks (no updates, no losses)."""
        self._check_initialised()
        residual, codes = x, []
        for layer in self.layers[:n_q]:
            q, idx, _ = layer(residual)
            residual = residual - q
            codes.append(idx)
        if not codes:
            return torch.zeros(x.shape[0], 0, x.shape[-1], dtype=torch.long, device=x.device)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of codebook vectors ``[B, D, F]`` for ``codes[B, n, F]`` (``n`` <= ``n_q``)."""
        if codes.shape[1] > self.n_q:
            raise ValueError(f"{self.name}: got {codes.shape[1]} codebooks, have {self.n_q}")
        out = None
        for i in range(codes.shape[1]):
            layer = self.layers[i]
            # Look up channel-last and project out before moving channels first: the library's
            # get_output_from_indices projects after the move, which breaks factorised codes
            # (codebook_dim != dim) when channel_last=False.
            q = layer.project_out(layer.codebook[codes[:, i]]).transpose(1, 2)  # [B, D, F]
            out = q if out is None else out + q
        return out


@torch.compiler.disable  # data-dependent sizes: run eagerly under train.compile (same random draws)
def sample_n_q(batch: int, n_total: int, dropout: float, device=None, generator=None) -> torch.Tensor:
    """Per-item number of codebooks for quantizer dropout.

    With probability ``dropout`` an item keeps a uniform ``1..n_total`` codebooks, else all of them.
    The minimum is 1: the first (semantic) codebook is never dropped.
    """
    n_q = torch.full((batch,), n_total, dtype=torch.long)
    if dropout > 0 and n_total > 1:
        drop = torch.rand(batch, generator=generator) < dropout
        n_q[drop] = torch.randint(1, n_total + 1, (int(drop.sum()),), generator=generator)
    return n_q.to(device)


class HierarchicalQuantizer(nn.Module):
    """A semantic RVQ followed by an acoustic RVQ, addressed as one list of codebooks.

    Codebooks ``0..n_semantic-1`` are semantic, ``n_semantic..`` acoustic; a request for ``n_q``
    codebooks takes that prefix. Two wirings:

    * ``residual=True`` (HASRD): both stages see one latent; the acoustic codebooks quantize the
      *residual* the semantic codebooks leave, and the output is the sum of both.
    * ``residual=False`` (dual stream): the acoustic codebooks quantize their *own* latent (the
      acoustic branch's), and the two quantized latents are returned apart for a fusion layer.
    """

    def __init__(
        self,
        semantic_dim: int,
        acoustic_dim: int,
        n_semantic: int,
        n_acoustic: int,
        codebook_size: int = 1024,
        residual: bool = True,
        **vq_kwargs,
    ):
        super().__init__()
        if n_semantic < 1:
            raise ValueError("a hierarchical quantizer needs at least one semantic codebook")
        if residual and semantic_dim != acoustic_dim:
            raise ValueError("residual wiring quantizes one latent: semantic_dim must equal acoustic_dim")
        self.residual = residual
        self.n_semantic, self.n_acoustic = n_semantic, n_acoustic
        self.semantic = ResidualQuantizer(semantic_dim, n_semantic, codebook_size, name="semantic", **vq_kwargs)
        self.acoustic = (
            ResidualQuantizer(acoustic_dim, n_acoustic, codebook_size, name="acoustic", **vq_kwargs)
            if n_acoustic > 0
            else None
        )

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.semantic.codebook_size] * self.n_semantic + (
            [self.acoustic.codebook_size] * self.n_acoustic if self.acoustic is not None else []
        )

    def _split(self, n_q):
        return n_q.clamp(max=self.n_semantic), (n_q - self.n_semantic).clamp(min=0)

    def forward(self, x_semantic, x_acoustic=None, n_q: torch.Tensor | None = None):
        """Returns ``(semantic_output, acoustic_output_or_None)``; codes concatenate in that order."""
        B = x_semantic.shape[0]
        if n_q is None:
            n_q = torch.full((B,), len(self.codebook_sizes), dtype=torch.long, device=x_semantic.device)
        n_sem, n_ac = self._split(n_q)
        sem = self.semantic(x_semantic, n_sem)
        ac = None
        if self.acoustic is not None:
            src = x_semantic - sem.x if self.residual else x_acoustic
            ac = self.acoustic(src, n_ac)
        return sem, ac

    def encode(self, x_semantic, x_acoustic=None, n_q: int | None = None) -> torch.Tensor:
        n_q = len(self.codebook_sizes) if n_q is None else n_q
        n_sem, n_ac = min(n_q, self.n_semantic), max(n_q - self.n_semantic, 0)
        codes = [self.semantic.encode(x_semantic, n_sem)]
        if n_ac:
            if self.residual:
                x_acoustic = x_semantic - self.semantic.decode(codes[0])
            codes.append(self.acoustic.encode(x_acoustic, n_ac))
        return torch.cat(codes, dim=1)

    @staticmethod
    def merge(sem: QuantizerOutput, ac: QuantizerOutput | None) -> QuantizerOutput:
        """A residual quantizer's two stages (:meth:`forward`) as one output: latents summed,
        codes concatenated (semantic first), penalties summed, metrics merged; ``first`` is the
        semantic stage's latent."""
        if ac is None:
            return QuantizerOutput(sem.x, sem.codes, sem.penalty, dict(sem.metrics), sem.x)
        return QuantizerOutput(sem.x + ac.x, torch.cat([sem.codes, ac.codes], dim=1), sem.penalty + ac.penalty,
                               {**sem.metrics, **ac.metrics}, sem.x)

    def decode_sum(self, codes: torch.Tensor) -> torch.Tensor:
        """A residual quantizer's latent of ``codes[B, n, F]``: the two stages' latents summed."""
        sem, ac = self.decode(codes)
        return sem + (ac if ac is not None else 0)

    def decode(self, codes: torch.Tensor):
        """``codes[B, n, F]`` -> ``(semantic latent, acoustic latent or None)``.

        Codebooks a prefix leaves out contribute zeros (for the acoustic stream: a zero latent).
        """
        sem = self.semantic.decode(codes[:, : self.n_semantic])
        ac = None
        if codes.shape[1] > self.n_semantic:
            ac = self.acoustic.decode(codes[:, self.n_semantic :])
        return sem, ac
