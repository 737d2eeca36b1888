"""``TokenLM``: a decoder-only transformer from continuous condition features to codec tokens.

UniTok-Audio style: one model serves several tasks (``se``, ``tse``, ``ss``, ``vc``, ``lass``, ...),
selected by a task token. The condition audio enters as continuous features (e.g. a codec
encoder's latent), the output is the *target* audio's discrete codec tokens, generated
autoregressively in the delay layout of :mod:`hasrd.lm.pattern`.

Sequence layout (one row per batch item; padding is masked and takes no position)::

    [task] [SEP] ([ref_0 .. ref_{Fr-1}] [REF_SEP]) ([text]) | [BOS + a_0] [d_0 + a_1] .. [d_{T-2} + a_{T-1}]
    '---------------- prefix, P positions ----------------' '-------------- T positions --------------'

* ``task``: ``nn.Embedding`` over the task names; ``SEP`` / ``REF_SEP``: learned vectors;
  ``ref_i``: ``Linear(ref_dim, d_model)`` of a reference (enrollment) frame, then RMSNorm, present
  only when ``ref`` is given; ``text``: one position, ``Linear(text_dim, d_model)`` of a
  text-query embedding, then RMSNorm, present only when ``text`` is given.
* ``d_t`` is delayed step ``t`` of the target codes (``[K]`` tokens, ``T = F + K - 1``); its input
  embedding is ``sum_k Embedding_k(d_t[k]) / sqrt(K)`` with ``K`` tables of ``V + 1`` entries (id
  ``V`` is the pad of the delay pattern and, on all codebooks at once, the ``BOS`` step).
* **The condition is frame-aligned, not a prefix.** The condition frames (one per target frame:
  the tasks are time-aligned, vc's targets are aligned onto the source's frames) go through a small
  non-causal :class:`CondEncoder`; step ``t`` emits codebook ``k`` of frame ``t - k``, so its input
  adds ``a_t = Linear(concat_k h[t - k])`` (:func:`hasrd.lm.pattern.delay_features`): the
  condition of every frame it emits a token of. Target frame ``f`` and its condition frame are
  thus always at the same step, whatever the batch holds.
* Positions are counted over real (unmasked) positions only (``position_ids`` from the mask, in
  training and in cached generation), so an item's logits are the same alone and in any padded
  batch.
* The hidden state at target position ``t`` (``BOS`` for ``t = 0``) predicts ``d_t`` through
  ``K`` heads ``Linear(d_model, V)`` (stored as one ``Linear(d_model, K * V)``).

The transformer is ``transformers``' ``LlamaModel`` (RoPE, RMSNorm, SwiGLU) driven through
``inputs_embeds``; generation with ``use_cache=True`` feeds the prefix once and then one position
per step through the model's KV cache.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hasrd.lm.pattern import delay, delay_features, undelay, valid_mask

#: the sequence layout of this module (an export records it; one of another layout is refused)
LAYOUT = 2

DEFAULT_CONFIG: dict[str, Any] = {
    "n_codebooks": 8, "codebook_size": 1024, "cond_dim": 128, "ref_dim": 0, "text_dim": 0,
    "tasks": ["se", "tse", "ss", "vc", "lass"],
    "d_model": 512, "layers": 8, "heads": 8, "ffn": 2048, "max_positions": 4096,
    "attn_implementation": "eager", "dropout": 0.0,
    "cond_conv_layers": 2, "cond_kernel": 5, "cond_layers": 2, "token_dropout": 0.0, "layout": LAYOUT,
}

TaskIds = torch.Tensor | Sequence[int | str]


def _llama(cfg: dict[str, Any]) -> tuple[nn.Module, str]:
    """The backbone and the name its forward gives the KV-cache argument (``cache`` in recent
    ``transformers``, ``past_key_values`` before)."""
    from transformers import LlamaConfig, LlamaModel

    lc = LlamaConfig(vocab_size=1, hidden_size=int(cfg["d_model"]), intermediate_size=int(cfg["ffn"]),
                     num_hidden_layers=int(cfg["layers"]), num_attention_heads=int(cfg["heads"]),
                     num_key_value_heads=int(cfg["heads"]), max_position_embeddings=int(cfg["max_positions"]),
                     attention_dropout=float(cfg["dropout"]), use_cache=True,
                     bos_token_id=None, eos_token_id=None, pad_token_id=None)
    lc._attn_implementation = str(cfg["attn_implementation"])
    model = LlamaModel(lc)
    params = inspect.signature(model.forward).parameters
    return model, ("cache" if "cache" in params else "past_key_values")


def positions(mask: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` attention mask (True = real) -> RoPE positions ``[B, n]`` counting real entries only."""
    return (mask.long().cumsum(dim=1) - 1).clamp_min(0)


class CondEncoder(nn.Module):
    """The condition frames ``[B, F, cond_dim]`` -> features ``[B, F, d]``, non-causal: a projection
    plus the task's embedding, ``conv_layers`` masked depthwise-convolution blocks, ``layers``
    transformer-encoder blocks over the real frames, RMSNorm. Padded frames neither feed the real
    ones nor come out non-zero, and no statistic mixes batch items (so an item's features do not
    depend on what else is in the batch)."""

    def __init__(self, cond_dim: int, d: int, conv_layers: int, kernel: int, layers: int, heads: int, ffn: int,
                 dropout: float):
        super().__init__()
        self.proj = nn.Linear(cond_dim, d)
        self.convs = nn.ModuleList(nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d) for _ in range(conv_layers))
        self.mixes = nn.ModuleList(nn.Linear(d, d) for _ in range(conv_layers))
        self.conv_norms = nn.ModuleList(nn.RMSNorm(d) for _ in range(conv_layers))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, ffn, dropout, batch_first=True, norm_first=True, activation="gelu")
            for _ in range(layers))
        self.norm = nn.RMSNorm(d)

    def forward(self, cond: torch.Tensor, mask: torch.Tensor, task_vec: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(cond.dtype)
        x = (self.proj(cond) + task_vec[:, None]) * m
        for conv, mix, norm in zip(self.convs, self.mixes, self.conv_norms):
            y = conv((x * m).transpose(1, 2)).transpose(1, 2)
            x = norm(x + F.gelu(mix(y)))
        for block in self.blocks:
            x = block(x * m, src_key_padding_mask=~mask)
        return self.norm(x) * m


class TokenLM(nn.Module):
    """See the module docstring. ``config`` keys (defaults in ``DEFAULT_CONFIG``): ``n_codebooks``
    (K), ``codebook_size`` (V), ``cond_dim``, ``ref_dim`` (0: none), ``text_dim`` (0: none),
    ``tasks``, ``d_model``, ``layers``, ``heads``, ``ffn``, ``max_positions``, ``attn_implementation``,
    ``dropout`` (in training only: on the input embeddings, the attention weights and the last
    hidden states), ``cond_conv_layers``, ``cond_kernel``, ``cond_layers`` (the
    :class:`CondEncoder`), ``token_dropout`` (in training only: each input token after ``BOS``
    becomes the pad id with this probability; the labels stay), ``layout`` (must be
    :data:`LAYOUT`)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        cfg = {**DEFAULT_CONFIG, **config}
        self.config = cfg
        self.K, self.V = int(cfg["n_codebooks"]), int(cfg["codebook_size"])
        self.pad_id = self.V
        self.cond_dim, self.ref_dim, self.text_dim = int(cfg["cond_dim"]), int(cfg["ref_dim"]), int(cfg["text_dim"])
        self.tasks = [str(t) for t in cfg["tasks"]]
        if self.K < 1 or self.V < 1 or self.cond_dim < 1 or not self.tasks:
            raise ValueError("TokenLM needs n_codebooks >= 1, codebook_size >= 1, cond_dim >= 1 and at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"TokenLM task names must be unique, got {self.tasks}")
        if int(cfg["layout"]) != LAYOUT:
            raise ValueError(f"TokenLM layout {cfg['layout']} is not this version's {LAYOUT} (a model of before the "
                             "frame-aligned condition: retrain it)")
        d = int(cfg["d_model"])
        self.max_positions = int(cfg["max_positions"])
        self.token_dropout = float(cfg["token_dropout"])

        self.task_embed = nn.Embedding(len(self.tasks), d)
        self.cond_enc = CondEncoder(self.cond_dim, d, int(cfg["cond_conv_layers"]), int(cfg["cond_kernel"]),
                                    int(cfg["cond_layers"]), int(cfg["heads"]), int(cfg["ffn"]), float(cfg["dropout"]))
        self.cond_delay = nn.Linear(self.K * d, d)  # the K frames a step emits tokens of -> one input vector
        nn.init.normal_(self.cond_delay.weight, std=(self.K * d) ** -0.5)  # output RMS about that of h
        nn.init.zeros_(self.cond_delay.bias)
        self.sep = nn.Parameter(torch.randn(d) * 0.02)
        self.ref_proj = nn.Sequential(nn.Linear(self.ref_dim, d), nn.RMSNorm(d)) if self.ref_dim > 0 else None
        self.ref_sep = nn.Parameter(torch.randn(d) * 0.02) if self.ref_dim > 0 else None
        self.text_proj = nn.Sequential(nn.Linear(self.text_dim, d), nn.RMSNorm(d)) if self.text_dim > 0 else None
        self.token_embed = nn.Embedding(self.K * (self.V + 1), d)  # K tables of V + 1 rows, side by side
        self.register_buffer("offsets", torch.arange(self.K) * (self.V + 1), persistent=False)
        self.heads = nn.Linear(d, self.K * self.V)  # K heads d_model -> V, side by side
        self.backbone, self._cache_kw = _llama(cfg)
        self.drop = nn.Dropout(float(cfg["dropout"]))

    # ---- tasks -----------------------------------------------------------------------------------
    def task_id(self, name: str) -> int:
        """Index of a task name in ``config["tasks"]``."""
        try:
            return self.tasks.index(name)
        except ValueError:
            raise ValueError(f"unknown task {name!r}; this model knows {self.tasks}") from None

    def _task_tensor(self, task_ids: TaskIds, B: int, device: torch.device) -> torch.Tensor:
        if isinstance(task_ids, torch.Tensor):
            t = task_ids.to(device=device, dtype=torch.long).reshape(-1)
        else:
            t = torch.tensor([self.task_id(x) if isinstance(x, str) else int(x) for x in task_ids],
                             dtype=torch.long, device=device)
        if t.numel() != B:
            raise ValueError(f"task_ids has {t.numel()} entries for a batch of {B}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= len(self.tasks)):
            raise ValueError(f"task ids must be in [0, {len(self.tasks)}), got {t.tolist()}")
        return t

    # ---- input checks and the prefix ---------------------------------------------------------------
    def _check_feats(self, name: str, x: torch.Tensor, dim: int, B: int | None) -> None:
        if x.dim() != 3 or x.shape[-1] != dim or (B is not None and x.shape[0] != B) or x.shape[1] < 1:
            raise ValueError(f"{name} must be [B, frames >= 1, {dim}]" + (f" with B = {B}" if B is not None else "")
                             + f", got shape {tuple(x.shape)}")

    @staticmethod
    def _check_mask(name: str, mask: torch.Tensor | None, x: torch.Tensor) -> None:
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"{name} must be [B, frames] = {tuple(x.shape[:2])}, got shape {tuple(mask.shape)}")

    def _prefix(self, task: torch.Tensor, ref: torch.Tensor | None, ref_mask: torch.Tensor | None,
                text: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefix embeddings ``[B, P, d]`` and their mask ``[B, P]`` (True = real)."""
        B, dev = task.shape[0], task.device
        ones = torch.ones(B, 1, dtype=torch.bool, device=dev)
        parts, masks = [self.task_embed(task)[:, None], self.sep.expand(B, 1, -1)], [ones, ones]
        if ref is not None:
            if self.ref_proj is None:
                raise ValueError("this model has no reference input (ref_dim = 0) but ref was given")
            self._check_feats("ref", ref, self.ref_dim, B)
            self._check_mask("ref_mask", ref_mask, ref)
            parts += [self.ref_proj(ref), self.ref_sep.expand(B, 1, -1)]
            masks += [ref_mask.bool() if ref_mask is not None else torch.ones(ref.shape[:2], dtype=torch.bool, device=dev), ones]
        if text is not None:
            if self.text_proj is None:
                raise ValueError("this model has no text input (text_dim = 0) but text was given")
            if text.dim() != 2 or tuple(text.shape) != (B, self.text_dim):
                raise ValueError(f"text must be [B, text_dim] = {(B, self.text_dim)}, got shape {tuple(text.shape)}")
            parts.append(self.text_proj(text)[:, None])
            masks.append(ones)
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    def _inputs(self, task_ids: TaskIds, cond: torch.Tensor, cond_mask: torch.Tensor | None,
                ref: torch.Tensor | None, ref_mask: torch.Tensor | None, text: torch.Tensor | None,
                frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate the conditioning inputs; return the prefix ``[B, P, d]``, its mask ``[B, P]`` and
        the aligned condition ``[B, frames + K - 1, d]`` (the condition cropped or zero-padded,
        masked, to ``frames`` frames)."""
        self._check_feats("cond", cond, self.cond_dim, None)
        B, dev = cond.shape[0], cond.device
        self._check_mask("cond_mask", cond_mask, cond)
        task = self._task_tensor(task_ids, B, dev)
        prefix, pmask = self._prefix(task, ref, ref_mask, text)
        mask = cond_mask.bool() if cond_mask is not None else torch.ones(cond.shape[:2], dtype=torch.bool, device=dev)
        n = cond.shape[1]
        if n >= frames:
            cond, mask = cond[:, :frames], mask[:, :frames]
        else:
            cond = torch.cat([cond, cond.new_zeros(B, frames - n, cond.shape[2])], dim=1)
            mask = torch.cat([mask, mask.new_zeros(B, frames - n)], dim=1)
        h = self.cond_enc(cond, mask, self.task_embed(task))
        return prefix, pmask, self.cond_delay(delay_features(h, self.K).flatten(2))

    def _embed_steps(self, delayed: torch.Tensor) -> torch.Tensor:
        """Delayed tokens ``[B, K, n]`` (ids in ``[0, V]``) -> summed embeddings ``[B, n, d]`` over
        ``sqrt(K)`` (RMS about 1, as the condition's)."""
        return self.token_embed(delayed + self.offsets[None, :, None]).sum(dim=1) * self.K ** -0.5

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, n, d]`` -> logits ``[B, K, n, V]``."""
        B, n, _ = h.shape
        return self.heads(h).view(B, n, self.K, self.V).permute(0, 2, 1, 3)

    def _run(self, x: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor, cache: Any = None,
             use_cache: bool = False) -> tuple[torch.Tensor, Any]:
        """The backbone on embeddings ``x [B, n, d]``; ``mask`` covers the cache and ``x``, and is always
        passed with ``position_ids`` (with no mask, ``transformers`` reads non-arange positions as
        packed sequences)."""
        kw: dict[str, Any] = {"inputs_embeds": self.drop(x), "attention_mask": mask.long(),
                              "position_ids": position_ids, "use_cache": use_cache}
        if cache is not None:
            kw[self._cache_kw] = cache
        out = self.backbone(**kw)
        new_cache = getattr(out, "cache", None) if self._cache_kw == "cache" else getattr(out, "past_key_values", None)
        return self.drop(out.last_hidden_state), new_cache

    def _check_length(self, P: int, T: int) -> None:
        if P + T > self.max_positions:
            raise ValueError(f"sequence of {P} prefix + {T} target positions exceeds max_positions = {self.max_positions}")

    # ---- training ------------------------------------------------------------------------------------
    def forward(self, task_ids: TaskIds, cond: torch.Tensor, targets: torch.Tensor,
                cond_mask: torch.Tensor | None = None, ref: torch.Tensor | None = None,
                text: torch.Tensor | None = None, ref_mask: torch.Tensor | None = None,
                target_lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Teacher forcing. ``task_ids``: ``[B]`` ids (or names); ``cond``: ``[B, Fc, cond_dim]``, frame
        ``f`` the condition of target frame ``f`` (cropped or zero-padded to ``F``);
        ``targets``: codes ``[B, K, F]`` in ``[0, V)``; masks ``[B, frames]`` (True = valid);
        ``target_lengths``: valid target frames per item (later frames are neither scored nor checked).

        Returns ``loss`` (cross-entropy per codebook over its non-pad delayed positions, averaged
        over codebooks), ``ce`` ``[K]`` (the per-codebook terms) and ``logits`` ``[B, K, T, V]`` in
        the delayed layout (``hasrd.lm.pattern.undelay`` gives ``[B, K, F, V]``)."""
        B = cond.shape[0]
        if targets.dim() != 3 or targets.shape[0] != B or targets.shape[1] != self.K or targets.shape[2] < 1:
            raise ValueError(f"targets must be [B={B}, K={self.K}, F >= 1], got shape {tuple(targets.shape)}")
        targets = targets.long()
        if target_lengths is not None:
            if tuple(target_lengths.shape) != (B,):
                raise ValueError(f"target_lengths must be [B={B}], got shape {tuple(target_lengths.shape)}")
            keep = torch.arange(targets.shape[2], device=targets.device)[None] < target_lengths.to(targets.device)[:, None]
            targets = targets.masked_fill(~keep[:, None, :], 0)
        if int(targets.min()) < 0 or int(targets.max()) >= self.V:
            raise ValueError(f"target tokens must be in [0, {self.V}), got range [{int(targets.min())}, {int(targets.max())}]")
        if target_lengths is not None:  # frames past the end become pad: not scored
            targets = targets.masked_fill(~keep[:, None, :], self.pad_id)
        prefix, pmask, aligned = self._inputs(task_ids, cond, cond_mask, ref, ref_mask, text, targets.shape[2])
        d = labels = delay(targets, self.pad_id)  # [B, K, T]
        T = d.shape[2]
        self._check_length(prefix.shape[1], T)
        bos = torch.full((B, self.K, 1), self.pad_id, dtype=torch.long, device=d.device)
        inp = torch.cat([bos, d[:, :, :-1]], dim=2)  # input t holds d_{t-1}
        if self.training and self.token_dropout > 0:
            drop = torch.rand(inp.shape, device=inp.device) < self.token_dropout
            drop[:, :, 0] = False
            inp = inp.masked_fill(drop, self.pad_id)
        x = torch.cat([prefix, self._embed_steps(inp) + aligned], dim=1)
        mask = torch.cat([pmask, pmask.new_ones(B, T)], dim=1)
        h, _ = self._run(x, mask, positions(mask))
        logits = self._logits(h[:, prefix.shape[1]:])  # [B, K, T, V]
        ce = F.cross_entropy(logits.reshape(-1, self.V), labels.reshape(-1), ignore_index=self.pad_id,
                             reduction="none").view(B, self.K, T)
        valid = (labels != self.pad_id).to(ce.dtype)
        per_k = (ce * valid).sum(dim=(0, 2)) / valid.sum(dim=(0, 2)).clamp_min(1)
        return {"loss": per_k.mean(), "ce": per_k.detach(), "logits": logits}

    # ---- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, task_ids: TaskIds, cond: torch.Tensor, num_frames: int, ref: torch.Tensor | None = None,
                 text: torch.Tensor | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 greedy: bool = False, seed: int | None = None, use_cache: bool = True,
                 cond_mask: torch.Tensor | None = None, ref_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Autoregressive generation of ``num_frames`` target frames -> codes ``[B, K, num_frames]``.

        ``cond`` frame ``f`` is the condition of output frame ``f`` (cropped, or zero-padded and
        masked, to ``num_frames``). Runs ``num_frames + K - 1`` delayed steps; at step ``t`` only the codebooks valid under the
        delay pattern (``k <= t < k + num_frames``) are sampled, the others are set to pad. With
        ``use_cache`` the prefix is fed once and then one position per step through the KV cache;
        without it the whole sequence is re-run each step (same result, slower). Sampling:
        ``greedy`` (argmax) or ``temperature`` with optional ``top_k`` / ``top_p`` (nucleus)
        filtering; ``seed`` draws from a local ``torch.Generator`` (repeatable; the global RNG is
        left alone)."""
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if not greedy and not temperature > 0:
            raise ValueError(f"temperature must be > 0 (or use greedy=True), got {temperature}")
        if top_k < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got top_k={top_k}, top_p={top_p}")
        num_frames = int(num_frames)
        prefix, pmask, aligned = self._inputs(task_ids, cond, cond_mask, ref, ref_mask, text, num_frames)
        B, P, dev = prefix.shape[0], prefix.shape[1], prefix.device
        T = num_frames + self.K - 1
        self._check_length(P, T)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=dev)
            gen.manual_seed(int(seed))
        allowed = valid_mask(self.K, num_frames, device=dev)  # [K, T]
        out = torch.full((B, self.K, T), self.pad_id, dtype=torch.long, device=dev)
        bos = self._embed_steps(torch.full((B, self.K, 1), self.pad_id, dtype=torch.long, device=dev))

        def mask_upto(n: int) -> torch.Tensor:
            return torch.cat([pmask, pmask.new_ones(B, n)], dim=1)

        n_real = pmask.long().sum(dim=1)  # the prefix's real positions per item
        cache = None
        for t in range(T):
            if use_cache and t > 0:
                x = self._embed_steps(out[:, :, t - 1:t]) + aligned[:, t:t + 1]
                h, cache = self._run(x, mask_upto(t + 1), (n_real + t)[:, None], cache=cache, use_cache=True)
            else:
                steps = torch.cat([bos, self._embed_steps(out[:, :, :t])], dim=1) + aligned[:, :t + 1]
                mask = mask_upto(t + 1)
                h, new_cache = self._run(torch.cat([prefix, steps], dim=1), mask, positions(mask), use_cache=use_cache)
                cache = new_cache if use_cache else None
            logits = self._logits(h[:, -1:])[:, :, 0]  # [B, K, V]
            tok = self._sample(logits, temperature, top_k, top_p, greedy, gen)
            out[:, :, t] = torch.where(allowed[None, :, t], tok, torch.full_like(tok, self.pad_id))
        return undelay(out)

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, greedy: bool,
                gen: torch.Generator | None) -> torch.Tensor:
        """``logits [..., V]`` -> token ids ``[...]``. Draws exactly one uniform number per token
        (inverse-CDF sampling), so the random stream does not depend on the values."""
        if greedy:
            return logits.argmax(dim=-1)
        logits = logits.float() / temperature
        V = logits.shape[-1]
        if 0 < top_k < V:
            kth = logits.topk(top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            p = sorted_logits.softmax(dim=-1)
            drop = (p.cumsum(dim=-1) - p) >= top_p  # mass before this token already covers top_p; keeps the first
            logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        probs = logits.softmax(dim=-1)
        cdf = probs.cumsum(dim=-1)
        u = torch.rand(probs.shape[:-1] + (1,), generator=gen, device=probs.device, dtype=probs.dtype)
        idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
        return idx.squeeze(-1).clamp_max(V - 1)
