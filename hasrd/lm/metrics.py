"""Does the token LM use its input? Teacher-forced accuracy per codebook with the true condition
and with the conditions shuffled across the batch, beside two baselines that need no model: copy
the input's own codes, and repeat the previous frame's.

The held-out loss alone cannot say it: a model that ignores its input and writes plausible codec
speech has a fine loss. With the input used, ``acc`` is far above ``acc_shuf`` (another item's
condition) and above both baselines.
"""
from __future__ import annotations

import torch

from .pattern import undelay


def _valid(targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, K, F]`` codes, ``[B]`` lengths -> ``[B, K, F]`` True on each item's real frames."""
    f = torch.arange(targets.shape[2], device=targets.device)
    return (f[None] < lengths.to(targets.device)[:, None])[:, None, :].expand_as(targets)


def _count(hit: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (hit & valid).sum(dim=(0, 2)), valid.sum(dim=(0, 2))


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor,
                   lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Delayed logits ``[B, K, F + K - 1, V]``, codes ``[B, K, F]`` -> correct and counted tokens per
    codebook ``[K]`` (the argmax against the code, on each item's real frames)."""
    pred = undelay(logits.argmax(dim=-1))
    return _count(pred == targets, _valid(targets, lengths))


def repeat_previous(targets: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline that predicts frame ``f`` by frame ``f - 1`` (frames 1.., per codebook ``[K]``)."""
    valid = _valid(targets, lengths)[:, :, 1:]
    return _count(targets[:, :, 1:] == targets[:, :, :-1], valid)


def copy_input(input_codes: torch.Tensor, targets: torch.Tensor,
               lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline that predicts the target by the input's own codes ``[B, K, F]`` (frame by frame)."""
    return _count(input_codes.to(targets.device) == targets, _valid(targets, lengths))


def shuffle_conditions(batch: dict) -> dict:
    """The batch with each item's condition (``cond``, ``cond_mask``) taken from the next item; the
    rest (task, ref, text, targets) kept."""
    out = dict(batch)
    for key in ("cond", "cond_mask"):
        out[key] = batch[key].roll(1, dims=0)
    return out


@torch.no_grad()
def input_use(net, batch: dict, input_codes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One batch through ``net`` (an :class:`~hasrd.lm.codec_lm.LMNetwork` or anything with its
    ``forward``), with its conditions and shuffled: ``loss``, ``loss_shuf`` and per codebook ``[K]``
    the counts ``correct`` / ``correct_shuf`` / ``correct_prev`` (and ``correct_copy`` with
    ``input_codes``), ``count`` and ``count_prev``. A batch of one item has no shuffled figures."""
    def run(b):
        return net(b["task"], b["cond"], b["targets"], cond_mask=b["cond_mask"], ref=b.get("ref"),
                   ref_mask=b.get("ref_mask"), text=b.get("text"), target_lengths=b["target_lengths"])

    targets, lengths = batch["targets"], batch["target_lengths"]
    out = run(batch)
    correct, count = token_accuracy(out["logits"], targets, lengths)
    res = {"loss": out["loss"], "correct": correct, "count": count}
    res["correct_prev"], res["count_prev"] = repeat_previous(targets, lengths)
    if input_codes is not None:
        res["correct_copy"] = copy_input(input_codes, targets, lengths)[0]
    if targets.shape[0] > 1:
        shuf = run(shuffle_conditions(batch))
        res["loss_shuf"] = shuf["loss"]
        res["correct_shuf"] = token_accuracy(shuf["logits"], targets, lengths)[0]
    return res
