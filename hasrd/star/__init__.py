"""Speech-to-audio generation, STAR style (docs/star.md): a person *says* what sound they want
("a bell ringing") and the model generates it, with no speech recogniser in between.

- :mod:`hasrd.star.encoders`: the frozen speech encoder of the prompts (a token codec's latent or
  an SSL model's hidden states);
- :mod:`hasrd.star.data`: event clips, spoken prompts, their cached features, training items;
- :mod:`hasrd.star.model`: the bridge (speech -> the semantic space of
  :func:`hasrd.lm.tasks.text_embedding`) and the flow-matching generator of codec latents;
- :mod:`hasrd.star.train`: training on the codec trainer's loop (``task: star``, two stages);
- :mod:`hasrd.star.pipeline`: :class:`SpeakToAudio` / :func:`load_speak_to_audio`, the export;
- :mod:`hasrd.star.prompt_check`: is a prompt speech at all (``hasrd speak-to-audio`` refuses otherwise).

Names are imported on first use, so ``import hasrd.star.prompt_check`` does not import torch.
"""
from __future__ import annotations

import importlib

_NAMES = {
    "Bridge": "model", "FlowGenerator": "model", "StarNetwork": "model",
    "SpeakToAudio": "pipeline", "load_speak_to_audio": "pipeline", "MAX_SECONDS": "pipeline",
    "SpeechEncoder": "encoders", "check_prompt": "prompt_check",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
