"""Exit codes, the two errors of the command line and the one-line problem text.

A :class:`UsageError` stops a command (exit 2); a :class:`JobError` (or any exception) while
working on one input becomes one ``<file>: <problem>`` line and the batch goes on (exit 1 at the
end). ``HASRD_DEBUG=1`` (:func:`debug_mode`) re-raises instead.
"""
from __future__ import annotations

import os
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command as a whole cannot run (bad option value, model not found): exit 2."""


class JobError(Exception):
    """One input failed; the message is the problem (the CLI prefixes the file)."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def problem_line(exc: BaseException, src: Path | str) -> str:
    """``<file>: <problem>`` for any exception raised while working on ``src``."""
    from hasrd.io.audio import AudioError

    src = str(src)
    if isinstance(exc, AudioError):  # its message already starts with the file name
        text = str(exc)
        return one_line(text if text.startswith(src) else f"{src}: {text}")
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        name = exc.filename if exc.filename and str(exc.filename) != src else None
        return one_line(f"{src}: {what}" + (f": {name}" if name else ""))
    if isinstance(exc, (JobError, ValueError)):
        return one_line(f"{src}: {exc}")
    return one_line(f"{src}: unexpected {type(exc).__name__}: {exc}")


def debug_mode() -> bool:
    """Whether ``HASRD_DEBUG`` is set (not empty, not 0): unexpected errors raise with their traceback."""
    return os.environ.get("HASRD_DEBUG", "") not in ("", "0")
