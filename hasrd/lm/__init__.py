"""Token language model: continuous condition features -> the target's codec tokens, generated
autoregressively in the delay layout, with a task token so one model serves several tasks
(docs/lm.md).

- :mod:`hasrd.lm.pattern`, :mod:`hasrd.lm.model`: the delay pattern and :class:`TokenLM`;
- :mod:`hasrd.lm.tasks`: the tasks, what each takes, the text-query embedding (no torch);
- :mod:`hasrd.lm.recipe`: examples of the five tasks made offline from a speech corpus;
- :mod:`hasrd.lm.data`: the codec features of a recipe, cached, and training crops;
- :mod:`hasrd.lm.train`: training on the codec trainer's loop (``task: lm``);
- :class:`CodecLM` / :func:`load_codec_lm`: codec + LM, the export, ``hasrd generate``.

Names are imported on first use, so ``import hasrd.lm.tasks`` does not import torch.
"""
from __future__ import annotations

import importlib

_NAMES = {
    "DEFAULT_CONFIG": "model", "TokenLM": "model",
    "delay": "pattern", "delay_features": "pattern", "LAYOUT": "model", "positions": "model", "num_steps": "pattern", "step_positions": "pattern", "undelay": "pattern", "valid_mask": "pattern",
    "CodecLM": "codec_lm", "LMNetwork": "codec_lm", "load_codec_lm": "codec_lm",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
