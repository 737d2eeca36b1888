"""Atomic file writes: every output is written under a temporary name in its own folder and
renamed onto its final name when complete, so a failed or interrupted write never leaves a
partial file.

A process killed with SIGKILL cannot clean up: it leaves its ``.NAME.HOST.PID.XXXXXXXX.tmp``
file. The first atomic write of a process into a folder removes the temporary files there that a
dead process of the same host left (:func:`remove_stale_temps`); those of live processes, of
other hosts (a shared folder) and of other naming schemes are left alone."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Callable, Iterator

_CLEANED: set[str] = set()  # folders this process has already swept


def host_tag() -> str:
    """This machine's name as it appears in temporary names (letters, digits and ``-`` only)."""
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0]) or "host"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (or cannot be told: then True, the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.NAME.HOST.PID.XXXXXXXX.tmp`` files (files or folders) in ``folder`` left by a
    process of this host that no longer runs; return what was removed."""
    host, removed = host_tag(), []
    try:
        entries = list(Path(folder).glob(".*.tmp"))
    except OSError:
        return removed
    for p in entries:
        parts = p.name.split(".")
        if len(parts) < 6 or parts[-4] != host or not parts[-3].isdigit():
            continue
        pid = int(parts[-3])
        if pid == os.getpid() or process_alive(pid):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p)
    return removed


def sweep_once(folder: str | os.PathLike) -> None:
    """:func:`remove_stale_temps` on ``folder``, the first time this process writes there."""
    key = str(Path(folder).resolve())
    if key not in _CLEANED:
        _CLEANED.add(key)
        remove_stale_temps(folder)


def temp_name(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.HOST.PID.XXXXXXXX.tmp`` (the first in a
    folder also sweeps it: :func:`sweep_once`)."""
    path = Path(path)
    sweep_once(path.parent)
    return path.parent / f".{path.name}.{host_tag()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def temp_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a :func:`temp_name` for ``path``; it is renamed onto ``path`` when the block ends,
    and removed if the block raises. ``overwrite=False``: the file appears only if ``path`` does
    not exist at that moment (a hard link, atomic); otherwise ``FileExistsError``, ``path``
    untouched (two processes racing for one output: exactly one wins)."""
    tmp = temp_name(path)
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_exclusive(tmp, Path(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish_exclusive(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # fails if path exists, whoever made it
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists (written by another process meanwhile)", str(path)) from None
    except OSError:  # a file system without hard links: the same check, not atomic
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists (written by another process meanwhile)", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``.

    A crash or error leaves either the old file or none, never a partial one; the new file gets
    the usual permissions (0666 minus the umask). ``overwrite=False``: ``FileExistsError`` if
    ``path`` exists when the file is complete (:func:`temp_path`).
    """
    with temp_path(path, overwrite) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
