"""Configs: YAML files with single inheritance and ``key.sub=value`` overrides.

A config may start with ``base: other.yaml`` (a path relative to the file); its keys are merged
over the base's, recursively for mappings (a mapping whose ``type`` differs replaces the base's). Command-line overrides use dotted keys and YAML values:
``train.lr=3e-4``, ``model.quantizer.n_acoustic=3``, ``data.train=[a,b]``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override is malformed (the message names which)."""


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base``, recursively; a mapping whose ``type`` changes replaces the
    base mapping whole (a conv encoder's keys mean nothing to an SSL encoder)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if (isinstance(v, dict) and isinstance(out.get(k), dict)
                and v.get("type", out[k].get("type")) == out[k].get("type")):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read ``path`` (following ``base:`` links) and apply ``overrides``."""
    path = Path(path)
    cfg = _load(path, seen=())
    return apply_overrides(cfg, overrides or [])


def _load(path: Path, seen: tuple) -> dict:
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' links form a loop")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping")
    base = data.pop("base", None)
    if base:
        data = merge(_load((path.parent / base), seen + (path.resolve(),)), data)
    return data


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            try:  # YAML 1.1 reads "3e-4" as a string; on a command line it is a number
                value = float(value)
            except ValueError:
                pass
        node = cfg
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
