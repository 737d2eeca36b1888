"""``--baselines`` specs -> systems: :func:`parse_baseline` (the forms are listed in
:mod:`hasrd.eval.systems`) and :func:`parse_bitrate`."""
from __future__ import annotations

import re
from pathlib import Path

from .base import System
from .enhancement import SpectralGatingSystem
from .hf_codecs import HfCodecSystem
from .library_codecs import DacSystem, EncodecSystem
from .subprocess_codecs import Codec2System, OpusSystem


def parse_bitrate(text: str) -> float:
    """``6000``, ``6k``, ``6kbps``, ``6.5 kbps``, ``1500bps`` -> bit/s."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(k|kbps|kbit/s|kb/s|bps|bit/s)?\s*", text.lower())
    if not m:
        raise ValueError(f"cannot read a bitrate from {text!r} (try 6000, 6k or 6kbps)")
    value = float(m.group(1))
    return value * 1000.0 if (m.group(2) or "").startswith("k") else value


def parse_baseline(spec: str) -> System:
    """One ``--baselines`` item -> a :class:`System` (the forms: :mod:`hasrd.eval.systems`).

    Raises:
        ValueError: the spec is malformed (an unknown kind, mode or bitrate).
        SystemUnavailable: the spec is fine but its tool or weights are not on this machine.
    """
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline kind {kind!r} in {spec!r} (codec2, opus, encodec, dac, hf or spectral-gating)")
    return BASELINES[kind](rest, spec)


def _setting(rest: str, spec: str) -> tuple[str, str | None]:
    """``SETTING[@WEIGHTS]`` of a codec baseline (a setting is required)."""
    arg, _, weights = rest.partition("@")
    if not arg:
        raise ValueError(f"baseline {spec!r} needs a setting, e.g. codec2:3200, opus:6000, encodec:1500")
    return arg, weights or None


#: ``--baselines`` kind -> builder ``(the text after "kind:", the whole spec) -> System``
BASELINES = {
    "spectral-gating": lambda rest, spec: SpectralGatingSystem(stationary=_gating_mode(rest, spec)),
    "hf": lambda rest, spec: _hf_spec(rest, spec),
    "codec2": lambda rest, spec: Codec2System(_setting(rest, spec)[0]),
    "opus": lambda rest, spec: OpusSystem(parse_bitrate(_setting(rest, spec)[0])),
    "encodec": lambda rest, spec: EncodecSystem(parse_bitrate(_setting(rest, spec)[0]), _setting(rest, spec)[1]),
    "dac": lambda rest, spec: DacSystem(parse_bitrate(_setting(rest, spec)[0]), _setting(rest, spec)[1]),
}


def _gating_mode(arg: str, spec: str) -> bool:
    """``spectral-gating[:MODE]``: True for ``stationary``, False for none/``nonstationary``."""
    mode = arg.strip().lower().replace("-", "").replace("_", "")
    if mode in ("", "nonstationary"):
        return False
    if mode == "stationary":
        return True
    raise ValueError(f"spectral-gating mode {arg!r} unknown in {spec!r}; "
                     "use spectral-gating or spectral-gating:stationary")


def _hf_spec(rest: str, spec: str) -> HfCodecSystem:
    """``PATH_OR_ID[@BITRATE]`` of ``hf:``: a path that exists as written keeps any ``@`` in it."""
    source, at, rate = rest.rpartition("@")
    if not at or Path(rest).exists():
        source, rate = rest, ""
    source = source.strip()
    if not source:
        raise ValueError(f"baseline {spec!r} needs a model: hf:FOLDER or hf:org/name, e.g. hf:facebook/encodec_24khz@1.5kbps")
    return HfCodecSystem(source, parse_bitrate(rate) if rate.strip() else None)
