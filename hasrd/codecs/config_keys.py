"""Which keys of a ``model`` config a codec actually read: a misspelt key (``model.quantizer.bogus``,
``model.decodr``) would otherwise change nothing, silently.

A codec reads its config while it builds itself; :class:`ReadTracker` is the config dict that
remembers every key asked for (``cfg["k"]``, ``cfg.get("k")``, ``"k" in cfg``, or all of them by
iterating or unpacking ``**cfg``), nested sections included; a key the codec writes itself (such
as a resolved encoder architecture) counts as its own. :func:`unread_keys` lists the keys
that no code asked for. ``train.py`` refuses them (:func:`hasrd.codecs.build_codec` with
``strict=True``); loading a saved model does not, so that an older export keeps loading.
"""
from __future__ import annotations

from typing import Any

#: keys read by the code around a codec rather than the codec itself
OUTSIDE_KEYS = frozenset({"name"})


class ReadTracker(dict):
    """A dict that records which of its keys were read (nested dicts are trackers too)."""

    def __init__(self, data: dict[str, Any] | None = None):
        super().__init__({k: ReadTracker(v) if isinstance(v, dict) else v for k, v in (data or {}).items()})
        self._read: set = set()

    def _all(self):
        self._read.update(super().keys())

    def __getitem__(self, key):
        self._read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._read.add(key)
        return super().get(key, default)

    def __contains__(self, key):
        self._read.add(key)
        return super().__contains__(key)

    def __setitem__(self, key, value):  # a key the codec writes (a resolved architecture) is its own
        self._read.add(key)
        super().__setitem__(key, value)

    def update(self, *args, **kw):
        for key, value in dict(*args, **kw).items():
            self[key] = value

    def pop(self, key, *default):
        self._read.add(key)
        return super().pop(key, *default)

    def setdefault(self, key, default=None):
        self._read.add(key)
        return super().setdefault(key, default)

    def __iter__(self):
        self._all()
        return super().__iter__()

    def keys(self):
        self._all()
        return super().keys()

    def items(self):
        self._all()
        return super().items()

    def values(self):
        self._all()
        return super().values()

    def copy(self):
        self._all()
        return plain(self)


def unread_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted names of the keys of ``cfg`` (a :class:`ReadTracker`) that were never read; within
    a section that was read, its own unread keys."""
    if not isinstance(cfg, ReadTracker):
        return []
    out = []
    for key, value in dict.items(cfg):
        name = f"{prefix}{key}"
        if key not in cfg._read:
            out.append(name)
        else:
            out += unread_keys(value, name + ".")
    return out


def nearest_read(cfg: Any, dotted: str) -> str | None:
    """The dotted name of the key that ``dotted`` (an unread key of ``cfg``) most likely misspells:
    the closest of the keys its section's code asked for (present or not)."""
    import difflib

    *parents, key = dotted.split(".")
    section = cfg
    for p in parents:
        section = dict.get(section, p)
    if not isinstance(section, ReadTracker):
        return None
    near = difflib.get_close_matches(key, [str(k) for k in section._read], n=1)
    return ".".join([*parents, near[0]]) if near else None


def plain(cfg: Any) -> Any:
    """A plain (untracked) deep copy of a config."""
    if isinstance(cfg, dict):
        return {k: plain(v) for k, v in dict.items(cfg)}
    if isinstance(cfg, list):
        return [plain(v) for v in cfg]
    return cfg
