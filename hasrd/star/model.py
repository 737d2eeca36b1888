"""The two networks of speech-to-audio generation (STAR style) and the module that holds them.

- :class:`Bridge` (stage 1): frozen speech-encoder features of a spoken prompt ``[B, F, C]`` ->
  a unit vector ``[B, S]`` in the semantic space (the space of
  :func:`hasrd.lm.tasks.text_embedding`): ``Linear(C, d)`` + positions + a
  ``torch.nn.TransformerEncoder`` (padding mask) + masked mean pool + ``Linear(d, S)``.
- :class:`FlowGenerator` (stage 2): a conditional flow-matching velocity field over standardised
  codec latents ``x_t [B, D, F]`` at time ``t [B]`` given a condition ``c [B, S]``: ``Linear(D, d)``,
  sinusoidal positions, a sinusoidal time embedding (MLP) plus the projected condition added to
  every frame, a ``TransformerEncoder``, ``Linear(d, D)``.
- :class:`StarNetwork`: both, the learned null condition (classifier-free guidance) and the
  per-dimension latent statistics as buffers, so that checkpoints and exports carry them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_BRIDGE = {"d_model": 128, "layers": 2, "heads": 4, "ffn": 256, "dropout": 0.1}
DEFAULT_GENERATOR = {"d_model": 192, "layers": 4, "heads": 4, "ffn": 512, "dropout": 0.0}


def sinusoid(x: torch.Tensor, dim: int, scale: float = 10000.0) -> torch.Tensor:
    """``[...]`` float positions or times -> ``[..., dim]`` sin/cos features."""
    half = dim // 2
    freqs = torch.exp(-math.log(scale) * torch.arange(half, device=x.device, dtype=torch.float32) / max(half, 1))
    a = x.float()[..., None] * freqs
    out = torch.cat([a.sin(), a.cos()], dim=-1)
    return F.pad(out, (0, dim - out.shape[-1]))


def _encoder(d: int, layers: int, heads: int, ffn: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout, batch_first=True, norm_first=True, activation="gelu")
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class Bridge(nn.Module):
    """Spoken-prompt features ``[B, F, C]`` (mask ``[B, F]``, True = real) -> unit vectors ``[B, S]``."""

    def __init__(self, in_dim: int, semantic_dim: int, d_model: int = 128, layers: int = 2, heads: int = 4,
                 ffn: int = 256, dropout: float = 0.1):
        super().__init__()
        self.config = {"in_dim": int(in_dim), "semantic_dim": int(semantic_dim), "d_model": int(d_model),
                       "layers": int(layers), "heads": int(heads), "ffn": int(ffn), "dropout": float(dropout)}
        self.inp = nn.Linear(in_dim, d_model)
        self.encoder = _encoder(d_model, layers, heads, ffn, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, semantic_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        pos = sinusoid(torch.arange(x.shape[1], device=x.device), self.inp.out_features)
        h = self.inp(x) + pos
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return F.normalize(self.out(pooled), dim=-1)


class FlowGenerator(nn.Module):
    """The velocity ``v(x_t, t, c)`` ``[B, D, F]`` of conditional flow matching (optional frame mask ``[B, F]``)."""

    def __init__(self, latent_dim: int, semantic_dim: int, d_model: int = 192, layers: int = 4, heads: int = 4,
                 ffn: int = 512, dropout: float = 0.0):
        super().__init__()
        self.config = {"latent_dim": int(latent_dim), "semantic_dim": int(semantic_dim), "d_model": int(d_model),
                       "layers": int(layers), "heads": int(heads), "ffn": int(ffn), "dropout": float(dropout)}
        self.d = int(d_model)
        self.inp = nn.Linear(latent_dim, d_model)
        self.time = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.cond = nn.Linear(semantic_dim, d_model)
        self.encoder = _encoder(d_model, layers, heads, ffn, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, latent_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x.transpose(1, 2))  # [B, F, d]
        pos = sinusoid(torch.arange(h.shape[1], device=h.device), self.d)
        glob = self.time(sinusoid(t * 1000.0, self.d)) + self.cond(c)  # [B, d]
        h = h + pos + glob[:, None]
        h = self.norm(self.encoder(h, src_key_padding_mask=None if mask is None else ~mask))
        return self.out(h).transpose(1, 2)


class StarNetwork(nn.Module):
    """The bridge, the generator (stage 2 only), the null condition and the latent statistics.

    ``config``: ``{"stage", "semantic_dim", "speech_dim", "latent_dim", "bridge": {...}, "generator": {...}}``.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        cfg = {"bridge": {}, "generator": {}, **config}
        cfg["bridge"] = {**DEFAULT_BRIDGE, **(cfg["bridge"] or {})}
        cfg["generator"] = {**DEFAULT_GENERATOR, **(cfg["generator"] or {})}
        self.stage, S = int(cfg["stage"]), int(cfg["semantic_dim"])
        if self.stage not in (1, 2):
            raise ValueError(f"star.stage must be 1 or 2, not {self.stage}")
        self.bridge = Bridge(int(cfg["speech_dim"]), S, **cfg["bridge"])
        self.generator = None
        if self.stage == 2:
            D = int(cfg["latent_dim"])
            self.generator = FlowGenerator(D, S, **cfg["generator"])
            self.null = nn.Parameter(torch.zeros(S))
            self.register_buffer("z_mean", torch.zeros(D))
            self.register_buffer("z_std", torch.ones(D))
        self._config = cfg

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def semantic_dim(self) -> int:
        return int(self._config["semantic_dim"])

    def forward(self, mode: str, *args, **kw):
        """``"bridge"``: :class:`Bridge` on ``(x, mask)``; ``"flow"``: :meth:`flow_loss` (one entry
        point, so a DDP-wrapped network syncs either)."""
        if mode == "bridge":
            return self.bridge(*args, **kw)
        if mode == "flow":
            return self.flow_loss(*args, **kw)
        raise ValueError(f"unknown mode {mode!r}")

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.z_mean.copy_(mean)
        self.z_std.copy_(std)

    def condition(self, c: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """``c [B, S]`` with the rows where ``drop`` is True replaced by the learned null vector."""
        if drop is None:
            return c
        return torch.where(drop[:, None], self.null.to(c.dtype).expand_as(c), c)

    def flow_loss(self, x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, c: torch.Tensor,
                  mask: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """MSE between ``v(x_t, t, c)`` and ``x1 - x0`` with ``x_t = (1 - t) x0 + t x1`` (all ``[B, D, F]``,
        standardised; ``mask [B, F]`` excludes padding)."""
        tt = t.view(-1, 1, 1)
        xt = (1 - tt) * x0 + tt * x1
        v = self.generator(xt, t, self.condition(c, drop), mask)
        err = (v - (x1 - x0)).pow(2)
        if mask is None:
            return err.mean()
        m = mask[:, None].to(err.dtype)
        return (err * m).sum() / (m.sum() * err.shape[1]).clamp_min(1.0)

    @torch.no_grad()
    def sample(self, c: torch.Tensor, frames: int, steps: int = 16, guidance: float = 2.0,
               seed: int | None = 0) -> torch.Tensor:
        """Euler integration of the ODE from ``t = 0`` (seeded Gaussian noise) to ``t = 1`` in
        ``steps`` steps, with classifier-free guidance ``v_null + guidance (v_c - v_null)``
        (``guidance`` 1: plain conditional); -> de-standardised latents ``[B, D, frames]``."""
        if self.generator is None:
            raise ValueError("this is a stage-1 model (the bridge only): it has no generator")
        B, D = c.shape[0], int(self._config["latent_dim"])
        g = torch.Generator().manual_seed(int(seed or 0))
        x = torch.randn(B, D, int(frames), generator=g).to(c.device)
        guided = float(guidance) != 1.0
        cc = torch.cat([c, self.null.expand_as(c)]) if guided else c
        for i in range(int(steps)):
            t = torch.full((cc.shape[0],), i / steps, device=c.device)
            v = self.generator(torch.cat([x, x]) if guided else x, t, cc)
            if guided:
                vc, vu = v.chunk(2)
                v = vu + float(guidance) * (vc - vu)
            x = x + v / steps
        return x * self.z_std[:, None] + self.z_mean[:, None]
