"""What the commands load: the model of ``--model`` (or an enhancer, a token LM...) on the device of
``--device``, the model's folder (where ``entropy.json`` lives), and ``--n-q`` / ``--bitrate``.
Every failure is a :class:`~hasrd.cli.errors.UsageError` of one line.

Only the standard library at import time: torch and the codecs are imported where they are used.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from hasrd.cli.errors import UsageError, debug_mode, one_line
from hasrd.coding import pick_n_q
from hasrd.dist import Dist

MODEL_HELP = ("a built-in model (default, hcodec-25hz, pitch), a model folder written by save_pretrained, or a hub id "
              "org/name from the local Hugging Face hub cache (default: the built-in default model)")


def resolve_device(name: str, dist: Dist) -> str:
    """``--device``: ``auto`` is the device accelerate assigns this process (cpu without one)."""
    if name == "auto":
        return str(dist.state.device) if dist.state is not None else "cpu"
    return name


def load_checked(loader, spec: str | None, device: str, what: str):
    """``loader(spec)`` moved to ``device`` in eval mode; a missing or broken folder or a bad device
    is a :class:`UsageError` of one line (``what`` names the thing: model, enhancer)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = loader(spec)
    except FileNotFoundError as exc:
        raise UsageError(one_line(str(exc))) from None
    except Exception as exc:  # a broken folder
        if debug_mode():
            raise
        raise UsageError(one_line(f"{spec or 'default'}: cannot load the {what} ({type(exc).__name__}: {exc})")) from None
    try:
        loaded = loaded.to(device)
    except Exception as exc:
        raise UsageError(one_line(f"--device {device}: {exc}")) from None
    return loaded.eval()


def load_model(spec: str | None, device: str):
    """The codec of ``--model`` (:func:`hasrd.codecs.load_codec`) on ``device``, in eval mode."""
    from hasrd.codecs import load_codec

    return load_checked(load_codec, spec, device, "model")


def model_dir(spec: str | None) -> Path:
    """The folder of ``--model`` (the built-in model's without one; a hub id's snapshot folder in
    the local hub cache): where ``entropy.json`` lives."""
    from hasrd.codecs import builtin_model_dir
    from hasrd.hub import is_hub_id, resolve_model_dir

    builtin = builtin_model_dir(spec)
    if builtin is not None:
        return builtin
    if is_hub_id(spec):
        try:
            return resolve_model_dir(spec)
        except FileNotFoundError as exc:
            raise UsageError(one_line(str(exc))) from None
    return Path(spec)


def n_q_option(codec, n_q: int | None, bps: float | None) -> int:
    """:func:`hasrd.coding.pick_n_q` for ``--n-q`` / ``--bitrate``: a value the model cannot take is
    a :class:`UsageError` naming the option."""
    try:
        return pick_n_q(codec, n_q, bps)
    except ValueError as exc:
        option = f"--bitrate {bps:g}" if bps is not None else f"--n-q {n_q}"
        raise UsageError(f"{option}: {exc}") from None
