"""The enhancement network: a non-autoregressive Conformer from noisy to clean codec representations.

Two forms, one class (``form`` in the config):

``continuous``
    input: the codec's continuous latent of noisy speech ``[B, D, F]`` (before quantization);
    output: the predicted clean latent ``[B, D, F]``, trained by regression (MSE + L1 in a
    per-dimension standardised space; the network predicts a correction added to its input).
``tokens``
    input: the noisy tokens ``LongTensor[B, n_q, F]`` (one embedding table per codebook, summed);
    output: logits ``[B, n_q, F, K]`` for the clean tokens, trained with cross-entropy per codebook.

Every frame is predicted in parallel (no autoregression); the Conformer blocks are torchaudio's.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("continuous", "tokens")

DEFAULT_ARCH = {"d_model": 192, "heads": 4, "ffn": 384, "layers": 4, "kernel": 15, "dropout": 0.1}


class LatentEnhancer(nn.Module):
    """See the module docstring. ``config``: ``form``, ``latent_dim`` (continuous) or ``n_q`` and
    ``codebook_size`` (tokens), plus the Conformer's ``d_model, heads, ffn, layers, kernel, dropout``."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        from torchaudio.models import Conformer

        cfg = {**DEFAULT_ARCH, **config}
        self.config = cfg
        self.form = cfg["form"]
        if self.form not in FORMS:
            raise ValueError(f"enhancer form must be one of {FORMS}, not {self.form!r}")
        d = int(cfg["d_model"])
        if self.form == "continuous":
            D = int(cfg["latent_dim"])
            self.register_buffer("mean", torch.zeros(D))
            self.register_buffer("std", torch.ones(D))
            self.inp = nn.Linear(D, d)
            self.out = nn.Linear(d, D)
            nn.init.zeros_(self.out.weight)  # start as the identity map: output = input
            nn.init.zeros_(self.out.bias)
        else:
            self.n_q, self.K = int(cfg["n_q"]), int(cfg["codebook_size"])
            self.embed = nn.Embedding(self.n_q * self.K, d)
            self.register_buffer("offsets", torch.arange(self.n_q) * self.K, persistent=False)
            self.out = nn.Linear(d, self.n_q * self.K)
        self.conformer = Conformer(input_dim=d, num_heads=int(cfg["heads"]), ffn_dim=int(cfg["ffn"]),
                                   num_layers=int(cfg["layers"]), depthwise_conv_kernel_size=int(cfg["kernel"]),
                                   dropout=float(cfg["dropout"]))

    # ---- standardisation of continuous latents ------------------------------------------------
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-dimension mean and std of the clean latents (computed once from the training data)."""
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.clamp_min(1e-5).to(self.std))

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean[:, None]) / self.std[:, None]

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std[:, None] + self.mean[:, None]

    # ---- the network ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Continuous: ``[B, D, F]`` latent -> ``[B, D, F]`` (standardised space in and out).
        Tokens: ``[B, n_q, F]`` codes -> ``[B, n_q, F, K]`` logits. ``lengths``: valid frames per item."""
        B, _, Fr = x.shape
        if lengths is None:
            lengths = torch.full((B,), Fr, dtype=torch.long, device=x.device)
        if self.form == "continuous":
            h = self.inp(x.transpose(1, 2))
        else:
            if x.shape[1] != self.n_q:
                raise ValueError(f"this enhancer takes {self.n_q} codebooks, got {x.shape[1]}")
            h = self.embed(x.long() + self.offsets[None, :, None]).sum(dim=1)  # [B, F, d]
        h, _ = self.conformer(h, lengths)
        y = self.out(h)
        if self.form == "continuous":
            return x + y.transpose(1, 2)
        return y.reshape(B, Fr, self.n_q, self.K).permute(0, 2, 1, 3)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Masked training loss and named terms to log (target in the same space as ``forward``'s input)."""
        mask = (torch.arange(pred.shape[2], device=pred.device)[None] < lengths[:, None])  # [B, F]
        if self.form == "continuous":
            m = mask[:, None, :].to(pred.dtype)
            n = m.sum() * pred.shape[1]
            mse = ((pred - target) ** 2 * m).sum() / n
            l1 = ((pred - target).abs() * m).sum() / n
            return mse + l1, {"mse": mse.detach(), "l1": l1.detach()}
        ce = F.cross_entropy(pred.permute(0, 3, 1, 2), target.long(), reduction="none")  # [B, n_q, F]
        m = mask[:, None, :].to(ce.dtype)
        per_q = (ce * m).sum(dim=(0, 2)) / m.sum(dim=(0, 2)).clamp_min(1)
        acc = ((pred.argmax(-1) == target).to(ce.dtype) * m).sum(dim=(0, 2)) / m.sum(dim=(0, 2)).clamp_min(1)
        logs = {"ce": per_q.mean().detach()}
        logs.update({f"acc_q{i + 1}": a.detach() for i, a in enumerate(acc)})
        return per_q.mean(), logs
