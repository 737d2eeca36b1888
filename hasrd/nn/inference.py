"""Inference-only rewrites of a trained model that keep its outputs (up to float rounding)."""
from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize


def remove_weight_norm(model: nn.Module) -> int:
    """Fold every weight norm under ``model`` into a plain weight; returns how many were folded.

    Weight norm recomputes ``g * v / ||v||`` at every call of every layer; after training that is
    a constant, so inference can store it once. Handles both torch flavours: the hook-based
    ``torch.nn.utils.weight_norm`` (what DAC's layers use) and the parametrization-based
    ``torch.nn.utils.parametrizations.weight_norm`` (what recent ``transformers`` models use).
    The parameter names change (``weight_g``/``weight_v`` or ``parametrizations.weight.*`` become
    ``weight``), so a folded model's ``state_dict`` no longer loads into a fresh one.
    """
    from torch.nn.utils.weight_norm import WeightNorm

    folded = 0
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, WeightNorm):
                nn.utils.remove_weight_norm(module, hook.name)
                folded += 1
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                if any(type(p).__name__ == "_WeightNorm" for p in module.parametrizations[name]):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                    folded += 1
    return folded
