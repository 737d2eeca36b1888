"""The codec classes by name: a config's ``model.name`` -> the class that builds it."""
from __future__ import annotations

_REGISTRY: dict[str, type] = {}


def register_codec(name: str):
    """Class decorator: make a codec class buildable from a config whose ``name`` is ``name``."""

    def wrap(cls):
        cls.codec_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def codec_class(name: str) -> type:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown codec name {name!r}; known: {sorted(_REGISTRY)}") from None
