#!/usr/bin/env python3
"""Build hasrd's default training corpus from synthesised speech, offline and reproducibly.

Speech is made with the Debian synthesisers ``flite``, ``festival`` (``text2wave``) and
``espeak-ng`` in many voices, speaking rates and pitches, from the public-domain / project-owned
sentences in ``scripts/texts/``. Every utterance is resampled to 16 kHz mono, trimmed to at most
0.1 s of leading/trailing silence, loudness-normalised (active-speech RMS -23 dBFS, peak capped at
-1 dBFS) and written as PCM16 WAV. See ``docs/data.md`` for the voices, texts and timings.

    python scripts/make_corpus.py --out data/corpus --hours 5

Outputs (``OUT`` = ``--out``):
    OUT/wavs/<voice>/<id>.wav   16 kHz mono PCM16
    OUT/manifest.jsonl          training utterances, one JSON object a line
    OUT/manifest_val.jsonl      held-out utterances: their sentences never occur in training
    OUT/summary.json            counts, hours, rejects, timing

The build is deterministic given ``--seed`` (ids are hashes of what was synthesised) and
resumable: a valid wav that already exists is not synthesised again. Exit codes: 0 done,
2 bad arguments, 3 a required tool or voice package is missing (one line on stderr says which
and the apt-get command that installs it).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _import_hasrd_io(name: str):
    """``hasrd/io/<name>.py`` of this checkout, loaded by path, without importing all of hasrd.

    ``import hasrd`` pulls in torch and the codecs (seconds of start-up, paid again by every
    worker process); the corpus builders need only modules such as ``hasrd/io/audio.py`` (numpy,
    soundfile and soxr alone) and ``hasrd/io/atomic.py`` (the standard library), so they are
    loaded from the checkout by path when it is there, else from an installed hasrd.
    """
    import importlib

    path = HERE.parent / "hasrd" / "io" / f"{name}.py"
    if path.is_file():
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"hasrd_io_{name}_for_corpus", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod
    return importlib.import_module(f"hasrd.io.{name}")


def _import_audio_module():
    """hasrd's audio module (the project's one loader), see :func:`_import_hasrd_io`."""
    return _import_hasrd_io("audio")


_audio = _import_audio_module()
AudioError, audio_info, load_audio, save_audio = _audio.AudioError, _audio.audio_info, _audio.load_audio, _audio.save_audio

SAMPLE_RATE = 16000
TEXT_DIR = HERE / "texts"
PACKAGES_FILE = HERE / "corpus_packages.txt"

TARGET_RMS_DBFS = -23.0  # RMS over active (non-silent) 10 ms frames
PEAK_CAP_DBFS = -1.0  # after RMS scaling, peaks above this are scaled down
ACTIVE_RANGE_DB = 35.0  # frames this far below the loud frames' level count as silence
ACTIVE_SMOOTH_FRAMES = 5  # 50 ms power average before that threshold
EDGE_SILENCE = 0.1  # seconds of silence kept before the first / after the last active frame
MIN_WORDS, MAX_WORDS = 4, 20
CLIP_LEVEL = 0.999  # raw synthesiser samples at/above this count as clipped
MAX_CLIPPED_FRACTION = 1e-3

EXIT_MISSING = 3


# --------------------------------------------------------------------------------------------
# Voices
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    name: str  # folder name under wavs/
    engine: str  # flite | festival | espeak-ng | real
    ident: str  # the synthesiser's own name for it
    weight: float  # relative share of training utterances
    pitch_mode: str = "native"  # native: the synthesiser's own control; sox: post-shift; none
    base_f0: float = 0.0  # flite / festival diphone: default mean F0 (Hz) the shift is applied to
    package: str = ""  # Debian package that provides it


# Measured on Debian 12 (see docs/data.md): flite's awb, slt, kal and kal16 follow
# int_f0_target_mean, rms ignores it (so it is pitch-shifted with sox afterwards); flite "kal"
# is an 8 kHz voice (kept, with a small share, for band-limited variety); "awb_time" is a
# talking clock only and is not used.
FLITE_VOICES = [
    Voice("flite_slt", "flite", "slt", 8.0, "native", 171.0, "flite"),
    Voice("flite_awb", "flite", "awb", 8.0, "native", 132.0, "flite"),
    Voice("flite_rms", "flite", "rms", 8.0, "sox", 0.0, "flite"),
    Voice("flite_kal16", "flite", "kal16", 6.0, "native", 95.0, "flite"),
    Voice("flite_kal", "flite", "kal", 2.0, "native", 95.0, "flite"),
]
# Festival: diphone voices take Duration_Stretch and int_lr_params' target_f0_mean; the HTS
# voices take hts_engine's "-r" speed but ignore its pitch options (checked), so they and the
# Italian diphone voices (whose intonation has no mean-F0 knob) are pitch-shifted with sox.
# The Catalan and Italian voices read the English sentences with their own letter-to-sound
# rules: accented speech, kept with small shares for speaker variety.
FESTIVAL_VOICES = [
    Voice("festival_slt_hts", "festival", "cmu_us_slt_arctic_hts", 10.0, "sox", 0.0, "festvox-us-slt-hts"),
    Voice("festival_kal", "festival", "kal_diphone", 6.0, "native", 105.0, "festvox-kallpc16k"),
    Voice("festival_ked", "festival", "ked_diphone", 6.0, "native", 105.0, "festvox-kdlpc16k"),
    Voice("festival_ona_ca_hts", "festival", "upc_ca_ona_hts", 3.0, "sox", 0.0, "festvox-ca-ona-hts"),
    Voice("festival_lp_it", "festival", "lp_diphone", 1.5, "sox", 0.0, "festvox-italp16k"),
    Voice("festival_pc_it", "festival", "pc_diphone", 1.5, "sox", 0.0, "festvox-itapc16k"),
]
FESTIVAL_VOICE_DIRS = {
    "cmu_us_slt_arctic_hts": "us/cmu_us_slt_arctic_hts",
    "kal_diphone": "english/kal_diphone",
    "ked_diphone": "english/ked_diphone",
    "upc_ca_ona_hts": "catalan/upc_ca_ona_hts",
    "lp_diphone": "italian/lp_diphone",
    "pc_diphone": "italian/pc_diphone",
}
FESTIVAL_ROOT = Path("/usr/share/festival/voices")

# espeak-ng: English accents x voice variants (files in espeak-ng-data/voices/!v).
# "en-gb+VARIANT" silently ignores the variant in espeak-ng 1.51 (checked: same samples as plain
# en-gb), while "en+VARIANT" applies it; "en" is the same British voice, so it is used instead.
ESPEAK_LANG_IDS = {"en-gb": "en"}
ESPEAK_LANGS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "croak", "whisper", "klatt", "klatt3", "Andy", "Annie", "antonio", "aunty",
                   "belinda", "benjamin", "david", "ed", "edward", "grandpa", "john", "linda",
                   "max", "michel", "norbert", "paul", "quincy", "rob", "steph", "travis", "zac"]
ESPEAK_TOTAL_WEIGHT = 30.0
ESPEAK_WHISPER_SHARE = 0.25  # whispered variants get a quarter of a normal variant's share


def espeak_voices() -> list[Voice]:
    combos = [(lang, var) for lang in ESPEAK_LANGS for var in ESPEAK_VARIANTS]
    raw = [ESPEAK_WHISPER_SHARE if var == "whisper" else 1.0 for _, var in combos]
    scale = ESPEAK_TOTAL_WEIGHT / sum(raw)
    out = []
    for (lang, var), w in zip(combos, raw):
        base = ESPEAK_LANG_IDS.get(lang, lang)
        ident = f"{base}+{var}" if var else base
        name = f"espeak_{lang}" + (f"_{var}" if var else "")
        out.append(Voice(name, "espeak-ng", ident, w * scale, "native", 0.0, "espeak-ng"))
    return out


def all_voices(engines: list[str]) -> list[Voice]:
    voices: list[Voice] = []
    if "flite" in engines:
        voices += FLITE_VOICES
    if "festival" in engines:
        voices += FESTIVAL_VOICES
    if "espeak-ng" in engines:
        voices += espeak_voices()
    return voices


# Speaking-rate factor (1 = the voice's default speed, >1 faster) and pitch shift in semitones.
RATE_RANGE = (0.85, 1.2)
PITCH_RANGE_NATIVE = (-3.0, 3.0)
PITCH_RANGE_SOX = (-2.0, 2.0)  # sox shifting is kept milder; 40 % of those utterances get none
SOX_UNSHIFTED_SHARE = 0.4
ESPEAK_ST_PER_PITCH_UNIT = 0.165  # measured: -p 30/50/70 -> 85/102/125 Hz median F0
ESPEAK_DEFAULT_WPM = 175


# --------------------------------------------------------------------------------------------
# Tool checks
# --------------------------------------------------------------------------------------------
class MissingTool(RuntimeError):
    pass


def read_required_packages() -> list[str]:
    pkgs = []
    for line in PACKAGES_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pkgs.append(line)
    return pkgs


def apt_line(packages: list[str]) -> str:
    return "apt-get install -y " + " ".join(packages)


def flite_voice_list() -> set[str]:
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(out.replace("Voices available:", "").split())


def check_tools(voices: list[Voice], with_real: bool, need_sox: bool = True) -> None:
    """Raise MissingTool naming what is missing and the apt-get line that installs it."""
    missing_bins: list[tuple[str, str]] = []
    engines = {v.engine for v in voices}
    binaries = {"flite": "flite", "festival": "text2wave", "espeak-ng": "espeak-ng"}
    packages = {"flite": "flite", "text2wave": "festival", "espeak-ng": "espeak-ng", "sox": "sox"}
    for eng in sorted(engines - {"real"}):
        if shutil.which(binaries[eng]) is None:
            missing_bins.append((binaries[eng], packages[binaries[eng]]))
    if need_sox and shutil.which("sox") is None:
        missing_bins.append(("sox", "sox"))
    missing_pkgs = sorted({p for _, p in missing_bins})
    if not missing_bins:
        if "flite" in engines:
            have = flite_voice_list()
            lost = [v.ident for v in voices if v.engine == "flite" and v.ident not in have]
            if lost:
                missing_pkgs.append("flite")
        for v in voices:
            if v.engine == "festival" and not (FESTIVAL_ROOT / FESTIVAL_VOICE_DIRS[v.ident]).is_dir():
                missing_pkgs.append(v.package)
    if with_real:
        if not Path("/usr/share/klettres").is_dir():
            missing_pkgs.append("klettres-data")
        if not Path("/usr/share/sounds/alsa").is_dir():
            missing_pkgs.append("alsa-utils")
    if missing_pkgs:
        what = ", ".join(f"{b} (package {p})" for b, p in missing_bins) or "voice/data packages"
        pkgs = sorted(set(missing_pkgs))
        raise MissingTool(
            f"make_corpus: missing {what}: {' '.join(pkgs)}; install with: {apt_line(pkgs)}"
            f"  (all corpus packages: {apt_line(read_required_packages())})"
        )


# --------------------------------------------------------------------------------------------
# Texts and the plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sentence:
    sid: str
    text: str
    source: str


def normalise_key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def word_count(text: str) -> int:
    return len(text.split())


def load_sentences(text_dir: Path = TEXT_DIR) -> tuple[list[Sentence], Counter]:
    """All distinct sentences of the text files, with their sources; dropped lines are counted.

    A text file holds one sentence a line; lines starting with ``#`` are comments, and a comment
    ``# source: NAME`` names the source recorded in the manifest for the lines that follow.
    """
    seen: set[str] = set()
    out: list[Sentence] = []
    dropped: Counter = Counter()
    for path in sorted(text_dir.glob("*.txt")):
        source = path.stem
        for line in path.read_text(encoding="utf-8").splitlines():
            line = " ".join(line.split())
            if not line:
                continue
            if line.startswith("#"):
                m = re.match(r"#\s*source:\s*(.+)", line)
                if m:
                    source = m.group(1).strip()
                continue
            n = word_count(line)
            if n < MIN_WORDS or n > MAX_WORDS:
                dropped["length"] += 1
                continue
            key = normalise_key(line)
            if key in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(key)
            sid = "s" + hashlib.sha1(key.encode()).hexdigest()[:10]
            out.append(Sentence(sid, line, source))
    return out, dropped


def split_sentences(sentences: list[Sentence], val_fraction: float, seed: int):
    """Hold out whole sentences: a val sentence never occurs in training, in any voice."""
    order = sorted(sentences, key=lambda s: s.sid)
    rng = random.Random(f"split-{seed}")
    rng.shuffle(order)
    n_val = max(1, int(round(len(order) * val_fraction))) if val_fraction > 0 else 0
    return order[n_val:], order[:n_val]


@dataclass
class Job:
    voice: Voice
    text: str
    source: str
    sid: str
    rate: float = 1.0
    pitch: float = 0.0
    real_path: str = ""  # for engine "real": the recording to import
    split: str = "train"

    @property
    def uid(self) -> str:
        spec = json.dumps([self.voice.name, self.voice.ident, self.text, self.rate, self.pitch,
                           self.real_path], ensure_ascii=False)
        return f"{self.sid}_{hashlib.sha1(spec.encode()).hexdigest()[:8]}"

    @property
    def rel_path(self) -> str:
        return f"wavs/{self.voice.name}/{self.uid}.wav"


def draw_prosody(voice: Voice, rng: random.Random) -> tuple[float, float]:
    rate = round(rng.uniform(*RATE_RANGE), 3)
    if voice.pitch_mode == "sox":
        pitch = 0.0 if rng.random() < SOX_UNSHIFTED_SHARE else rng.uniform(*PITCH_RANGE_SOX)
    elif voice.pitch_mode == "none":
        pitch = 0.0
    else:
        pitch = rng.uniform(*PITCH_RANGE_NATIVE)
    return rate, round(pitch, 2)


class WeightedRoundRobin:
    """Smooth weighted round robin: voices interleave, each getting its weight's share."""

    def __init__(self, voices: list[Voice]):
        self.voices = voices
        self.current = [0.0] * len(voices)
        self.total = sum(v.weight for v in voices)

    def next(self) -> Voice:
        for i, v in enumerate(self.voices):
            self.current[i] += v.weight
        best = max(range(len(self.voices)), key=lambda i: self.current[i])
        self.current[best] -= self.total
        return self.voices[best]


def train_stream(voices: list[Voice], sentences: list[Sentence], seed: int, limit: int = 10**6):
    """Deterministic, effectively endless sequence of training jobs."""
    order = sorted(voices, key=lambda v: v.name)
    random.Random(f"voices-{seed}").shuffle(order)  # so a short build still mixes accents
    wrr = WeightedRoundRobin(order)
    rng = random.Random(f"prosody-{seed}")
    cursors: dict[str, int] = defaultdict(int)
    perms: dict[tuple[str, int], list[Sentence]] = {}
    for _ in range(limit):
        voice = wrr.next()
        k = cursors[voice.name]
        cursors[voice.name] += 1
        epoch, pos = divmod(k, len(sentences))
        key = (voice.name, epoch)
        if key not in perms:
            perms.pop((voice.name, epoch - 1), None)
            perm = list(sentences)
            random.Random(f"order-{seed}-{voice.name}-{epoch}").shuffle(perm)
            perms[key] = perm
        s = perms[key][pos]
        rate, pitch = draw_prosody(voice, rng)
        yield Job(voice, s.text, s.source, s.sid, rate, pitch)


def val_jobs(voices: list[Voice], sentences: list[Sentence], seed: int, per_sentence: int = 2) -> list[Job]:
    """Each held-out sentence in ``per_sentence`` voices (drawn by weight), default-ish prosody."""
    rng = random.Random(f"val-{seed}")
    weights = [v.weight for v in voices]
    jobs = []
    for s in sorted(sentences, key=lambda s: s.sid):
        chosen: list[Voice] = []
        while len(chosen) < min(per_sentence, len(voices)):
            v = rng.choices(voices, weights)[0]
            if v not in chosen:
                chosen.append(v)
        for v in chosen:
            rate, pitch = draw_prosody(v, rng)
            jobs.append(Job(v, s.text, s.source, s.sid, rate, pitch, split="val"))
    return jobs


REAL_EVERY = 3
REAL_SOURCE_KLETTRES = "klettres-data (KDE KLettres, GPL-2+)"
REAL_SOURCE_ALSA = "alsa-utils test sounds (GPL-2+)"


def real_jobs() -> list[Job]:
    """The real recordings allowed for training: KLettres letters/syllables and ALSA test words."""
    jobs: list[Job] = []
    root = Path("/usr/share/klettres")
    for xml in sorted(root.glob("*/sounds.xml")):
        lang = xml.parent.name
        try:
            tree = ET.parse(xml)
        except ET.ParseError:
            continue
        for el in tree.iter("sound"):
            rel, name = el.get("file"), el.get("name")
            if not rel or not name:
                continue
            f = root / rel
            if not f.is_file():
                continue
            voice = Voice(f"real_klettres_{lang}", "real", f"klettres/{lang}", 0.0, "none", 0.0, "klettres-data")
            sid = "k" + hashlib.sha1(f"{lang}/{rel}".encode()).hexdigest()[:10]
            jobs.append(Job(voice, name, REAL_SOURCE_KLETTRES, sid, real_path=str(f)))
    alsa = Path("/usr/share/sounds/alsa")
    for f in sorted(alsa.glob("*.wav")):
        if f.stem.lower() == "noise":  # not speech
            continue
        voice = Voice("real_alsa", "real", "alsa", 0.0, "none", 0.0, "alsa-utils")
        sid = "a" + hashlib.sha1(f.name.encode()).hexdigest()[:10]
        jobs.append(Job(voice, f.stem.replace("_", " "), REAL_SOURCE_ALSA, sid, real_path=str(f)))
    return jobs


# --------------------------------------------------------------------------------------------
# Synthesis (runs in worker processes)
# --------------------------------------------------------------------------------------------
def synth_command(job: Job, txt: Path, wav: Path) -> list[str]:
    v, rate, pitch = job.voice, job.rate, job.pitch
    if v.engine == "flite":
        cmd = ["flite", "-voice", v.ident, "--setf", f"duration_stretch={1.0 / rate:.4f}"]
        if v.pitch_mode == "native":
            cmd += ["--setf", f"int_f0_target_mean={v.base_f0 * 2 ** (pitch / 12):.1f}"]
        return cmd + ["-f", str(txt), "-o", str(wav)]
    if v.engine == "festival":
        evals = [f"(voice_{v.ident})"]
        if v.ident.endswith("_hts"):
            evals.append(f"(set! hts_engine_params (append hts_engine_params '((\"-r\" {rate:.4f}))))")
        else:
            evals.append(f"(Parameter.set 'Duration_Stretch (/ (Parameter.get 'Duration_Stretch) {rate:.4f}))")
        if v.pitch_mode == "native":
            f = 2 ** (pitch / 12)
            evals.append(
                f"(set! int_lr_params '((target_f0_mean {v.base_f0 * f:.1f}) (target_f0_std {14 * f:.1f})"
                " (model_f0_mean 170) (model_f0_std 34)))"
            )
        cmd = ["text2wave"]
        for e in evals:
            cmd += ["-eval", e]
        return cmd + [str(txt), "-o", str(wav)]
    if v.engine == "espeak-ng":
        p = int(round(50 + pitch / ESPEAK_ST_PER_PITCH_UNIT))
        s = int(round(ESPEAK_DEFAULT_WPM * rate))
        return ["espeak-ng", "-v", v.ident, "-s", str(s), "-p", str(max(0, min(99, p))),
                "-f", str(txt), "-w", str(wav)]
    raise ValueError(f"no synthesiser for engine {v.engine!r}")


def frame_rms_db(x: np.ndarray, hop: int) -> np.ndarray:
    n = len(x) // hop
    if n == 0:
        return np.full(1, -120.0)
    fr = x[: n * hop].reshape(n, hop)
    return 10 * np.log10(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-12)


def active_frames(db: np.ndarray) -> np.ndarray:
    """Boolean mask of speech frames among 10 ms frame levels ``db`` (see trim_and_normalise)."""
    power = np.convolve(10 ** (db / 10), np.ones(ACTIVE_SMOOTH_FRAMES) / ACTIVE_SMOOTH_FRAMES, mode="same")
    smooth = 10 * np.log10(power + 1e-12)
    return (smooth > np.percentile(db, 95) - ACTIVE_RANGE_DB) & (smooth > -60.0)


def trim_and_normalise(x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Trim edges to <= EDGE_SILENCE s around active frames; scale to the loudness target.

    Returns the processed audio and its active-speech RMS before scaling (dBFS).
    Active frames: 10 ms frames whose level, averaged over 50 ms, is within ACTIVE_RANGE_DB of
    the loud frames' level (the 95th percentile of frame levels) and above -60 dBFS. The
    averaging and the 35 dB range keep isolated noise bursts from counting as speech: festival's
    Catalan HTS voice opens with ~0.3 s of noise 35-45 dB down.
    """
    hop = sr // 100
    db = frame_rms_db(x, hop)
    active = active_frames(db)
    if not active.any():
        return x[:0], -120.0
    idx = np.flatnonzero(active)
    start = max(0, idx[0] * hop - int(EDGE_SILENCE * sr))
    end = min(len(x), (idx[-1] + 1) * hop + int(EDGE_SILENCE * sr))
    y = x[start:end].astype(np.float64)
    fade = min(len(y) // 4, int(0.005 * sr))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        y[:fade] *= ramp
        y[-fade:] *= ramp[::-1]
    act_rms_db = 10 * np.log10(np.mean(10 ** (db[active] / 10)))
    gain = 10 ** ((TARGET_RMS_DBFS - act_rms_db) / 20)
    peak = np.abs(y).max() * gain
    cap = 10 ** (PEAK_CAP_DBFS / 20)
    if peak > cap:
        gain *= cap / peak
    return (y * gain).astype(np.float32), float(act_rms_db)


def sane_duration(job: Job, dur: float) -> str | None:
    if job.voice.engine == "real":
        return None if 0.15 <= dur <= 30.0 else f"duration {dur:.2f} s out of range for a recording"
    words = word_count(job.text)
    lo = 0.12 * words
    hi = 1.5 * words + 2.0
    if dur < lo or dur > hi:
        return f"duration {dur:.2f} s implausible for {words} words (expected {lo:.1f}-{hi:.1f} s)"
    return None


def valid_existing(path: Path) -> float | None:
    """Duration of an already-built wav if it is a usable 16 kHz mono file, else None."""
    try:
        info = audio_info(path)
    except AudioError:
        return None
    if info["sample_rate"] != SAMPLE_RATE or info["channels"] != 1 or info["duration"] < 0.15:
        return None
    return info["duration"]


def run_job(job: Job, out_dir: str, tmp_root: str) -> dict:
    """Synthesise (or import), clean and write one utterance; returns its record or a reject."""
    out = Path(out_dir) / job.rel_path
    existing = valid_existing(out) if out.exists() else None
    if existing is not None:
        return record(job, existing, skipped=True)
    tmp = Path(tempfile.mkdtemp(prefix="utt-", dir=tmp_root))
    try:
        if job.voice.engine == "real":
            raw_path = Path(job.real_path)
        else:
            txt = tmp / "text.txt"
            txt.write_text(job.text + "\n", encoding="utf-8")
            raw_path = tmp / "raw.wav"
            cmd = synth_command(job, txt, raw_path)
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=120, cwd=tmp)
            except subprocess.TimeoutExpired:
                return reject(job, "synthesiser timed out")
            if proc.returncode != 0 or not raw_path.exists() or raw_path.stat().st_size <= 44:
                err = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                return reject(job, f"synthesiser failed ({proc.returncode}): {err[0][:200]}")
            if job.voice.pitch_mode == "sox" and job.pitch != 0.0:
                shifted = tmp / "shifted.wav"
                proc = subprocess.run(["sox", str(raw_path), str(shifted), "pitch", f"{job.pitch * 100:.0f}"],
                                      capture_output=True, timeout=120)
                if proc.returncode != 0:
                    return reject(job, "sox pitch failed: " + proc.stderr.decode(errors="replace")[:200])
                raw_path = shifted
        try:
            audio, native_sr = load_audio(raw_path)
        except AudioError as exc:
            return reject(job, f"unreadable output: {exc}")
        x = audio[0]
        clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL)) if len(x) else 0.0
        if clipped > MAX_CLIPPED_FRACTION:
            return reject(job, f"clipped ({clipped:.2%} of samples at full scale)")
        if native_sr != SAMPLE_RATE:
            audio, _ = load_audio(raw_path, sample_rate=SAMPLE_RATE)
            x = audio[0]
        y, act_db = trim_and_normalise(x, SAMPLE_RATE)
        if len(y) == 0 or act_db < -55.0:
            return reject(job, "silent output")
        dur = len(y) / SAMPLE_RATE
        bad = sane_duration(job, dur)
        if bad:
            return reject(job, bad)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_audio(out, y, SAMPLE_RATE)
        return record(job, dur, native_sr=native_sr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def record(job: Job, duration: float, skipped: bool = False, native_sr: int | None = None) -> dict:
    rec = {
        "path": job.rel_path,
        "text": job.text,
        "voice": job.voice.name,
        "engine": job.voice.engine,
        "rate": job.rate,
        "pitch": job.pitch,
        "duration": round(duration, 3),
        "source": job.source,
        "id": job.uid,
        "synth_voice": job.voice.ident,
    }
    return {"ok": True, "skipped": skipped, "record": rec, "native_sr": native_sr}


def reject(job: Job, reason: str) -> dict:
    return {"ok": False, "reason": reason, "path": job.rel_path, "voice": job.voice.name}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
class Runner:
    """Runs jobs in order (in-process for one job, else a process pool with a bounded window)."""

    def __init__(self, jobs: int, out_dir: Path, tmp_root: Path):
        self.jobs = jobs
        self.out_dir = str(out_dir)
        self.tmp_root = str(tmp_root)
        self.pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None

    def run(self, job_iter):
        """Yield ``(job, result)`` in job order; the caller may stop early (close the generator)."""
        if self.pool is None:
            for job in job_iter:
                yield job, run_job(job, self.out_dir, self.tmp_root)
            return
        window: list = []
        it = iter(job_iter)
        exhausted = False
        try:
            while True:
                while not exhausted and len(window) < 2 * self.jobs:
                    try:
                        job = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    window.append((job, self.pool.submit(run_job, job, self.out_dir, self.tmp_root)))
                if not window:
                    return
                job, fut = window.pop(0)
                yield job, fut.result()
        finally:
            for job, fut in window:  # in flight when the budget was reached: drop their output
                if not fut.cancel():
                    try:
                        res = fut.result()
                    except Exception:
                        continue
                    if res.get("ok") and not res.get("skipped"):
                        Path(self.out_dir, job.rel_path).unlink(missing_ok=True)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def write_jsonl(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/corpus"), help="output folder (default data/corpus)")
    ap.add_argument("--hours", type=float, default=5.0, help="target hours of training audio (default 5)")
    ap.add_argument("--max-utts", type=int, default=None,
                    help="cap on training utterances (validation is then capped at max(2, N//3))")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--jobs", type=int, default=2, help="parallel synthesis processes (default 2)")
    ap.add_argument("--val-fraction", type=float, default=0.02,
                    help="share of sentences held out entirely for validation (default 0.02)")
    ap.add_argument("--val-voices", type=int, default=2, help="voices per held-out sentence (default 2)")
    ap.add_argument("--engines", default="flite,festival,espeak-ng",
                    help="comma-separated synthesisers to use (default all three)")
    ap.add_argument("--with-real", action="store_true",
                    help="add the real recordings of klettres-data and alsa-utils to training")
    ap.add_argument("--check", action="store_true", help="only check that the tools and voices are installed")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ("flite", "festival", "espeak-ng")]
    if bad or not engines:
        ap.error(f"--engines: unknown {bad}; choose from flite, festival, espeak-ng")
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    if args.hours <= 0:
        ap.error("--hours must be > 0")
    if args.max_utts is not None and args.max_utts < 1:
        ap.error("--max-utts must be >= 1")
    if not 0.0 <= args.val_fraction < 0.5:
        ap.error("--val-fraction must be in [0, 0.5)")
    args.engines = engines
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    voices = all_voices(args.engines)
    try:
        check_tools(voices, args.with_real)
    except MissingTool as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_MISSING
    if args.check:
        print(f"make_corpus: all tools present ({len(voices)} voices)")
        return 0

    sentences, dropped = load_sentences()
    train_s, val_s = split_sentences(sentences, args.val_fraction, args.seed)
    out: Path = args.out.resolve()  # synthesisers run inside per-utterance temp folders
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))
    budget_s = args.hours * 3600.0
    t0 = time.time()

    vjobs = val_jobs(voices, val_s, args.seed, args.val_voices)
    if args.max_utts is not None:
        vjobs = vjobs[: max(2, args.max_utts // 3)]
    pre_jobs = real_jobs() if args.with_real else []
    random.Random(f"real-{args.seed}").shuffle(pre_jobs)  # mix languages through the build

    from tqdm import tqdm

    stats = {"train": [], "val": [], "rejects": Counter(), "reject_examples": [], "skipped": 0,
             "synth_seconds_audio": 0.0}
    runner = Runner(args.jobs, out, tmp_root)

    def handle(split: str, res: dict) -> dict | None:
        if not res["ok"]:
            stats["rejects"][res["voice"]] += 1
            if len(stats["reject_examples"]) < 20:
                stats["reject_examples"].append(f"{res['path']}: {res['reason']}")
            return None
        rec = res["record"]
        stats[split].append(rec)
        if res["skipped"]:
            stats["skipped"] += 1
        else:
            stats["synth_seconds_audio"] += rec["duration"]
        return rec

    try:
        # validation first (small, fixed), then training up to the budget
        for job, res in runner.run(iter(vjobs)):
            handle("val", res)
        write_jsonl(out / "manifest_val.jsonl", stats["val"])

        def train_jobs():
            # real recordings (if any) are interleaved: one after every REAL_EVERY synthetic ones
            real = iter(pre_jobs)
            for i, job in enumerate(train_stream(voices, train_s, args.seed)):
                if i % REAL_EVERY == 0:
                    r = next(real, None)
                    if r is not None:
                        yield r
                yield job

        by_hours = args.max_utts is None
        bar = tqdm(total=round(budget_s) if by_hours else args.max_utts, unit="s" if by_hours else "utt",
                   desc="train", disable=args.no_progress, dynamic_ncols=True, smoothing=0.05,
                   mininterval=0.2 if sys.stderr.isatty() else 30.0)
        total = 0.0
        last_flush = time.time()
        gen = runner.run(train_jobs())
        attempts = 0
        for job, res in gen:
            attempts += 1
            rec = handle("train", res)
            if attempts >= 50 and not stats["train"]:
                ex = stats["reject_examples"][0] if stats["reject_examples"] else "?"
                print(f"make_corpus: the first {attempts} utterances all failed, stopping (e.g. {ex})",
                      file=sys.stderr)
                return 1
            if rec is not None:
                total += rec["duration"]
                bar.update(min(int(total), bar.total) - bar.n if by_hours else 1)  # whole seconds
            if time.time() - last_flush > 60:  # a usable partial manifest while a long build runs
                write_jsonl(out / "manifest.jsonl", stats["train"])
                last_flush = time.time()
            if total >= budget_s or (args.max_utts is not None and len(stats["train"]) >= args.max_utts):
                break
        gen.close()
        bar.close()
        write_jsonl(out / "manifest.jsonl", stats["train"])
    finally:
        runner.close()
        shutil.rmtree(tmp_root, ignore_errors=True)

    elapsed = time.time() - t0
    summary = summarise(stats, elapsed, sentences, train_s, val_s, dropped, args)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    if not stats["train"]:
        print("make_corpus: no utterance could be built", file=sys.stderr)
        return 1
    return 0


def summarise(stats, elapsed, sentences, train_s, val_s, dropped, args) -> dict:
    def groups(recs, key):
        c: dict[str, list] = defaultdict(lambda: [0, 0.0])
        for r in recs:
            c[r[key]][0] += 1
            c[r[key]][1] += r["duration"]
        return {k: {"utts": n, "hours": round(d / 3600, 4)} for k, (n, d) in sorted(c.items())}

    train, val = stats["train"], stats["val"]
    synth_h = stats["synth_seconds_audio"] / 3600
    return {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sentences": {"total": len(sentences), "train": len(train_s), "val": len(val_s),
                      "dropped": dict(dropped), "sources": dict(Counter(s.source for s in sentences))},
        "train": {"utts": len(train), "hours": round(sum(r["duration"] for r in train) / 3600, 4)},
        "val": {"utts": len(val), "hours": round(sum(r["duration"] for r in val) / 3600, 4)},
        "per_engine": groups(train + val, "engine"),
        "per_voice": groups(train + val, "voice"),
        "rejected": sum(stats["rejects"].values()),
        "rejected_per_voice": dict(stats["rejects"]),
        "reject_examples": stats["reject_examples"],
        "skipped_existing": stats["skipped"],
        "built_hours_this_run": round(synth_h, 4),
        "wall_seconds": round(elapsed, 1),
        "wall_seconds_per_built_hour": round(elapsed / synth_h, 1) if synth_h > 0 else None,
    }


def print_summary(s: dict) -> None:
    p = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    p(f"make_corpus: train {s['train']['utts']} utts / {s['train']['hours']:.3f} h, "
      f"val {s['val']['utts']} utts / {s['val']['hours']:.3f} h; "
      f"{s['skipped_existing']} reused, {s['rejected']} rejected; wall {s['wall_seconds']:.0f} s"
      + (f" ({s['wall_seconds_per_built_hour'] / 3600:.2f} h per built hour)"
         if s["wall_seconds_per_built_hour"] else ""))
    p("  per engine: " + ", ".join(f"{k} {v['utts']} ({v['hours']:.3f} h)" for k, v in s["per_engine"].items()))
    voices = s["per_voice"]
    non_espeak = {k: v for k, v in voices.items() if not k.startswith("espeak_")}
    esp = {k: v for k, v in voices.items() if k.startswith("espeak_")}
    p("  per voice: " + ", ".join(f"{k} {v['utts']}" for k, v in non_espeak.items()))
    if esp:
        p(f"  espeak-ng: {len(esp)} accent+variant voices, {sum(v['utts'] for v in esp.values())} utts")
    for ex in s["reject_examples"][:5]:
        p("  rejected: " + ex)


if __name__ == "__main__":
    sys.exit(main())
