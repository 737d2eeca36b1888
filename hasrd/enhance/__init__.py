"""Speech enhancement in a codec's latent space (docs/enhancement.md).

- :mod:`hasrd.enhance.noise`, :mod:`hasrd.enhance.recipe`: noisy/clean pairs made offline;
- :mod:`hasrd.enhance.model`: the non-autoregressive Conformer, continuous or tokens form;
- :mod:`hasrd.enhance.features`: the codec representations of the pairs, cached;
- :mod:`hasrd.enhance.train`: training on the codec trainer's loop (``task: enhance``);
- :class:`Enhancer` / :func:`load_enhancer`: codec + network, ``hasrd enhance``.
"""
from .enhancer import Enhancer, load_enhancer
from .model import FORMS, LatentEnhancer

__all__ = ["Enhancer", "FORMS", "LatentEnhancer", "load_enhancer"]
