"""Atomic file writes: every output is written under a temporary name in its own folder and
renamed onto its final name when complete, so a failed or interrupted write never leaves a
partial file (a process killed with SIGKILL may leave a ``.NAME.PID.XXXXXXXX.tmp`` file)."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator


def temp_name(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.PID.XXXXXXXX.tmp``."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def temp_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a :func:`temp_name` for ``path``; it is renamed onto ``path`` when the block ends,
    and removed if the block raises."""
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def temp_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty folder at a :func:`temp_name` beside ``path``. When the block ends it
    replaces ``path`` (an existing ``path`` folder is removed first); if the block raises, it is
    removed and ``path`` is left as it was."""
    path, tmp = Path(path), temp_name(path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], object]) -> None:
    """``writer(tmp)`` writes the file at a temporary name, which then becomes ``path``."""
    with temp_path(path) as tmp:
        writer(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``.

    A crash or error leaves either the old file or none, never a partial one; the new file gets
    the usual permissions (0666 minus the umask).
    """
    with temp_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
