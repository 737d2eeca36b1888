"""The MusicGen-style *delay* pattern for ``K`` codebooks per frame.

A residual codec gives ``K`` tokens per frame, ``codes[b, k, f]``. Flattening them (one
transformer step per token) costs ``K * F`` steps; predicting all ``K`` of a frame in one step
ignores that codebook ``k`` refines codebooks ``< k`` of the same frame. The delay pattern is the
usual middle ground: codebook ``k`` is shifted right by ``k`` steps, so one transformer step ``t``
emits codebook 0 of frame ``t``, codebook 1 of frame ``t - 1``, ..., codebook ``k`` of frame
``t - k``. That is ``F + K - 1`` steps in all (instead of ``K * F``), and when codebook ``k`` of
frame ``f`` is predicted (at step ``f + k``) the codebooks ``< k`` of frame ``f`` were emitted at
earlier steps and are in the model's context.

Layout (``T = F + K - 1``)::

    step t:      0     1     2     3   ...
    k = 0:      c0,0  c0,1  c0,2  c0,3 ...  c0,F-1  pad    pad
    k = 1:      pad   c1,0  c1,1  c1,2 ...          c1,F-1 pad
    k = 2:      pad   pad   c2,0  c2,1 ...                 c2,F-1

The positions marked ``pad`` (the triangles at both ends) hold ``pad_id``; they are neither
predicted nor scored.
"""
from __future__ import annotations

import torch


def delay(codes: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``codes [B, K, F]`` -> ``[B, K, F + K - 1]``: codebook ``k`` shifted right by ``k`` steps,
    the rest filled with ``pad_id``."""
    if codes.dim() != 3:
        raise ValueError(f"delay expects codes [B, K, F], got shape {tuple(codes.shape)}")
    B, K, F = codes.shape
    out = codes.new_full((B, K, F + K - 1), pad_id)
    for k in range(K):
        out[:, k, k:k + F] = codes[:, k]
    return out


def undelay(delayed: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`delay`: ``[B, K, F + K - 1]`` -> ``[B, K, F]`` (works on any trailing
    dims too, e.g. logits ``[B, K, T, V]``)."""
    if delayed.dim() < 3:
        raise ValueError(f"undelay expects [B, K, T, ...], got shape {tuple(delayed.shape)}")
    K, T = delayed.shape[1], delayed.shape[2]
    F = T - K + 1
    if F < 0:
        raise ValueError(f"undelay: {T} steps are too few for {K} codebooks")
    return torch.stack([delayed[:, k, k:k + F] for k in range(K)], dim=1)


def num_steps(K: int, F: int) -> int:
    """Number of delayed steps for ``F`` frames of ``K`` codebooks (``F + K - 1``)."""
    return F + K - 1


def step_positions(t: int, K: int, F: int) -> list[tuple[int, int]]:
    """The ``(k, frame)`` pairs emitted at delayed step ``t``: codebook ``k`` of frame ``t - k``, for
    every ``k`` with ``0 <= t - k < F``."""
    return [(k, t - k) for k in range(K) if 0 <= t - k < F]


def valid_mask(K: int, F: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``BoolTensor [K, F + K - 1]``: True where the delayed layout holds a real token (not pad).
    Column ``t`` is the set of codebooks sampled at generation step ``t``."""
    t = torch.arange(F + K - 1, device=device)[None, :]
    k = torch.arange(K, device=device)[:, None]
    return (t >= k) & (t - k < F)


def delay_features(h: torch.Tensor, K: int) -> torch.Tensor:
    """Per-frame features ``[B, F, d]`` -> ``[B, F + K - 1, K, d]`` in the delay layout:
    ``out[:, t, k] = h[:, t - k]`` where ``0 <= t - k < F``, zero elsewhere. Delayed step ``t``
    emits codebook ``k`` of frame ``t - k``, so ``out[:, t]`` holds the features of every frame
    that step ``t`` emits a token of."""
    B, F, d = h.shape
    out = h.new_zeros(B, F + K - 1, K, d)
    for k in range(K):
        out[:, k:k + F, k] = h
    return out
