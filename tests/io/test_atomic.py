"""Atomic writes leave no partial output, and the temporary file that a kill -9 leaves behind is
removed by the next write into its folder (only when its process is dead and of this host)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from hasrd.io.atomic import atomic_write_bytes, host_tag, remove_stale_temps
from hasrd.io.audio import save_audio

KILLED = """
import os, signal, sys
from hasrd.io.atomic import temp_name
tmp = temp_name(sys.argv[1])
tmp.write_bytes(b"half a file")
print(tmp, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_writer(path) -> str:
    """A process that starts an atomic write of ``path`` and is killed with SIGKILL; its temp name."""
    run = subprocess.run([sys.executable, "-c", KILLED, str(path)], capture_output=True, text=True)
    assert run.returncode == -9
    return run.stdout.strip()


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    left = killed_writer(tmp_path / "a.wav")
    assert (tmp_path / left.split("/")[-1]).is_file()
    live = tmp_path / f".b.wav.{host_tag()}.{subprocess.os.getppid()}.abcd1234.tmp"  # a live process's
    other = tmp_path / ".c.wav.otherhost.999999.abcd1234.tmp"  # another machine's (a shared folder)
    foreign = tmp_path / ".d.wav.tmp"  # not ours
    for p in (live, other, foreign):
        p.write_bytes(b"x")
    save_audio(tmp_path / "e.wav", np.zeros(160, np.float32), 16000)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["e.wav", live.name, other.name, foreign.name]), names


def test_atomic_writes_sweep_their_folder_too(tmp_path):
    killed_writer(tmp_path / "t.hsrd")
    atomic_write_bytes(tmp_path / "u.hsrd", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.hsrd"]
    assert remove_stale_temps(tmp_path) == []
