"""Classic codecs run as command-line tools: Codec 2 (``c2enc``/``c2dec``) and Opus
(``opusenc``/``opusdec``). A missing tool raises :class:`SystemUnavailable`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

from hasrd.io.audio import load_audio, resample, save_audio

from .base import System, SystemUnavailable, fit_length, mono


def _need_tools(system: str, *tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemUnavailable(f"{system}: tool {', '.join(missing)} not found on PATH")


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if res.returncode != 0:
        tail = res.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {tail[0]}")


CODEC2_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C", "450")


class Codec2System(System):
    """Codec 2 through Debian's ``c2enc``/``c2dec`` (8 kHz 16-bit raw PCM in and out).

    The payload is the headerless ``.bit`` file that ``c2enc`` writes (each frame rounded up to
    whole bytes, so 700C's 28-bit frames take 4 bytes: 800 bit/s measured).
    """

    kind = "codec2"
    RATE = 8000

    def __init__(self, mode: str, enc_tool: str = "c2enc", dec_tool: str = "c2dec"):
        mode = mode.upper()
        if mode not in CODEC2_MODES:
            raise ValueError(f"codec2 mode {mode!r} unknown; use one of {', '.join(CODEC2_MODES)}")
        self.mode = mode
        self.name = f"codec2:{mode}"
        self.family = "codec2"
        self.bitrate_nominal = float(re.sub(r"\D", "", mode))
        self.enc_tool, self.dec_tool = enc_tool, dec_tool
        _need_tools(self.name, enc_tool, dec_tool)

    def process(self, audio, sample_rate):
        audio = mono(audio)
        x = resample(audio, sample_rate, self.RATE)
        with tempfile.TemporaryDirectory(prefix="hasrd-c2-") as tmp:
            src, bits, dst = (os.path.join(tmp, n) for n in ("in.raw", "out.bit", "out.raw"))
            (np.clip(x, -1, 1) * 32767).astype("<i2").tofile(src)
            _run([self.enc_tool, self.mode, src, bits], "c2enc")
            _run([self.dec_tool, self.mode, bits, dst], "c2dec")
            payload = os.path.getsize(bits)
            y = np.fromfile(dst, dtype="<i2").astype(np.float32) / 32768.0
        return fit_length(resample(y, self.RATE, sample_rate), audio.size), payload


class OpusSystem(System):
    """Opus through ``opusenc`` (default VBR, ``--bitrate``) and ``opusdec --rate``.

    The payload is the whole ``.opus`` file: Ogg pages and the OpusHead/OpusTags headers count,
    which adds a few hundred bytes per file (noticeable on short clips).
    """

    kind = "opus"

    def __init__(self, bps: float, enc_tool: str = "opusenc", dec_tool: str = "opusdec"):
        if not 6000 <= bps <= 256000:
            raise ValueError(f"opus bitrate {bps:g} bit/s is outside opusenc's 6000..256000")
        self.bitrate_nominal = float(bps)
        self.name = f"opus:{int(bps)}"
        self.family = "opus"
        self.enc_tool, self.dec_tool = enc_tool, dec_tool
        _need_tools(self.name, enc_tool, dec_tool)

    def process(self, audio, sample_rate):
        audio = mono(audio)
        with tempfile.TemporaryDirectory(prefix="hasrd-opus-") as tmp:
            src, enc, dst = (os.path.join(tmp, n) for n in ("in.wav", "out.opus", "out.wav"))
            save_audio(src, audio[None], sample_rate)
            _run([self.enc_tool, "--quiet", "--bitrate", f"{self.bitrate_nominal / 1000:g}", src, enc], "opusenc")
            _run([self.dec_tool, "--quiet", "--rate", str(sample_rate), enc, dst], "opusdec")
            payload = os.path.getsize(enc)
            y, _ = load_audio(dst, sample_rate=sample_rate)
        return fit_length(y[0], audio.size), payload
