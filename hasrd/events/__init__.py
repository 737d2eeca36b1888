"""Sound events for a future speech-to-audio model (docs/events.md).

- :mod:`hasrd.events.synth`: procedural generators, one per class (:data:`CLASSES`), and each
  class's text descriptions (:data:`DESCRIPTIONS`);
- :mod:`hasrd.events.packages`: clips from installed Debian packages whose file names say what
  they are, with the licence of each;
- :mod:`hasrd.events.recipe`: the data set, ``python -m hasrd.events.recipe --out DIR``.
"""
from __future__ import annotations

from .synth import CLASSES, DESCRIPTIONS, make_event

__all__ = ["CLASSES", "DESCRIPTIONS", "make_event"]
