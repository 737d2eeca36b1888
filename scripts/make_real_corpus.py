#!/usr/bin/env python3
"""Build a corpus of real recorded speech from the Debian packages allowed for training.

Only these packages are read (the project's data rule: every other recording on the machine is
for evaluation only):

* ``asterisk-core-sounds-{en,es,fr,it,ru}-g722``: telephone prompts read by professional voices,
  raw G.722 (64 kbit/s, 16 kHz wideband), decoded with the PyPI package ``g722``;
  ``asterisk-extra-sounds-en-g722`` when installed (it is not in Debian 12);
* ``fillets-ng-data``, ``fillets-ng-data-cs``, ``fillets-ng-data-nl``: the voiced dialogues of
  the game Fish Fillets (Ogg Vorbis, ``sound/<level>/<lang>/<prefix>-<char>-<name>.ogg``).

Each recording is decoded, downmixed, resampled to 16 kHz (soxr), split at pauses into
utterances of 1-15 s, trimmed and loudness-normalised exactly like the synthetic corpus
(``scripts/make_corpus.py``'s ``trim_and_normalise``), de-duplicated by the SHA-1 of its PCM and
written as PCM16 WAV. See ``docs/data.md``.

    python scripts/make_real_corpus.py --out data/real --jobs 2

Outputs (``OUT`` = ``--out``):
    OUT/wavs/<package>/<speaker slug>/<id>.wav   16 kHz mono PCM16
    OUT/manifest.jsonl, OUT/manifest_val.jsonl  training / held-out utterances (whole speakers held out)
    OUT/summary.json                            hours, utterances, speakers, drops and skips per source and split

Resumable: a valid wav that already exists is kept (not rewritten) unless ``--force``. Exit
codes: 0 done, 1 nothing built, 2 bad arguments (an unknown package among them), 3 a package
asked for, or the ``g722`` decoder, is missing (one line on stderr names the fix).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent


def _load_make_corpus():
    """scripts/make_corpus.py as a module (the scripts are not a package)."""
    mod = sys.modules.get("make_corpus")
    if mod is not None and Path(getattr(mod, "__file__", "")).resolve() == HERE / "make_corpus.py":
        return mod
    spec = importlib.util.spec_from_file_location("make_corpus", HERE / "make_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


mc = _load_make_corpus()
_audio = mc._audio  # hasrd/io/audio.py, as loaded by make_corpus._import_audio_module()
temp_path = mc._import_hasrd_io("atomic").temp_path

SAMPLE_RATE = mc.SAMPLE_RATE  # 16 kHz
HOP = SAMPLE_RATE // 100  # 10 ms frames, as in trim_and_normalise
MIN_UTT_S = 1.0
MAX_UTT_S = 15.0
MIN_PAUSE_S = 0.25  # a pause: a run of inactive 10 ms frames at least this long
MAX_VAL_SPEAKER_SHARE = 0.15  # a speaker with more of all audio than this is never held out
EXIT_MISSING = mc.EXIT_MISSING  # 3
EXIT_BAD_ARGS = 2

# Package roots: module-level so that tests can point them elsewhere.
ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
FILLETS_ROOT = Path("/usr/share/games/fillets-ng")
# List a package's files with dpkg-query -L when dpkg is there (this tells core from extra
# asterisk sounds, which share voice folders); else glob the roots.
USE_DPKG = shutil.which("dpkg-query") is not None

ASTERISK_PACKAGES = {
    "asterisk-core-sounds-en-g722": "en",
    "asterisk-core-sounds-es-g722": "es",
    "asterisk-core-sounds-fr-g722": "fr",
    "asterisk-core-sounds-it-g722": "it",
    "asterisk-core-sounds-ru-g722": "ru",
    "asterisk-extra-sounds-en-g722": "en",
}
FILLETS_PACKAGES = ("fillets-ng-data", "fillets-ng-data-cs", "fillets-ng-data-nl")
ALLOWED_PACKAGES = (*ASTERISK_PACKAGES, *FILLETS_PACKAGES)
NOT_IN_DEBIAN_12 = {"asterisk-extra-sounds-en-g722"}
# The voiced dialogue languages of Fish Fillets. The base package's sound/<level>/en/ folders
# hold sound effects, music and language-neutral character noises (keyboard clicks, a piano,
# laughs), so they are skipped.
FILLETS_LANGS = ("cs", "nl")
FILLETS_FISH = ("m", "v")  # the two fish: the same two actors in every level of a language
FILLETS_NAME = re.compile(r"^([^-]+)-([^-]+)-(.+)$")  # <prefix>-<char>-<name>
ASTERISK_VOICE_DIR = re.compile(r"^([a-z]{2})_([A-Z]{2})_([a-z])_(.+)$")  # en_US_f_Allison


class MissingPackage(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Finding the recordings
# --------------------------------------------------------------------------------------------
def _dpkg_files(pkg: str) -> list[Path]:
    """Files of an installed package (``dpkg-query -L``); [] when it is not installed."""
    try:
        proc = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return [Path(line) for line in proc.stdout.splitlines() if line.strip()]


def _under(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def package_candidates(pkg: str) -> list[Path]:
    """The package's files under its root (sorted, existing, of its audio extension)."""
    if pkg in ASTERISK_PACKAGES:
        root, ext = ASTERISK_ROOT, ".g722"
    else:
        root, ext = FILLETS_ROOT, ".ogg"
    if USE_DPKG:
        files = [p for p in _dpkg_files(pkg) if p.suffix == ext and _under(p, root) is not None]
    elif pkg in ASTERISK_PACKAGES:
        if pkg in NOT_IN_DEBIAN_12:  # shares the core voice folders: only dpkg can tell them apart
            return []
        lang = ASTERISK_PACKAGES[pkg]
        files = []
        for d in sorted(root.glob(f"{lang}_*")):
            if d.is_dir() and not d.is_symlink() and ASTERISK_VOICE_DIR.match(d.name):
                files += d.rglob(f"*{ext}")
    elif pkg == "fillets-ng-data":
        files = [*root.glob("music/*.ogg"), *root.glob("sound/share/*.ogg"), *root.glob("sound/*/en/*.ogg")]
    else:
        lang = pkg.rsplit("-", 1)[1]
        files = list(root.glob(f"sound/*/{lang}/*.ogg"))
    return sorted(p for p in files if p.is_file())


def classify(pkg: str, path: Path) -> dict | str:
    """A recording's task fields (rel, speaker, language), or the reason it is skipped."""
    if pkg in ASTERISK_PACKAGES:
        rel = path.relative_to(ASTERISK_ROOT)
        m = ASTERISK_VOICE_DIR.match(rel.parts[0])
        if not m or len(rel.parts) < 2:
            return "not in an asterisk voice folder (<lang>_<COUNTRY>_<f|m>_<name>/)"
        if "silence" in rel.parts[1:-1]:
            return "silence/ prompts (not speech)"
        return {"rel": rel.as_posix(), "speaker": f"asterisk/{m.group(4)}", "language": f"{m.group(1)}-{m.group(2)}"}
    rel = path.relative_to(FILLETS_ROOT)
    parts = rel.parts
    if parts[0] == "music":
        return "music/ (game music)"
    if len(parts) >= 2 and parts[:2] == ("sound", "share"):
        return "sound/share/ (shared across levels: sound effects, and in cs/nl the fishes' idle remarks)"
    if len(parts) != 4 or parts[0] != "sound":
        return "not under sound/<level>/<lang>/"
    _, level, lang, name = parts
    if lang not in FILLETS_LANGS:
        return f"sound/<level>/{lang}/ (sound effects and music; the voiced languages are {', '.join(FILLETS_LANGS)})"
    m = FILLETS_NAME.match(Path(name).stem)
    if m is None:
        speaker = f"fillets-{lang}/{level}/other"
    else:
        char = m.group(2)
        if char == "x":
            return "character code x (sound effect)"
        speaker = f"fillets-{lang}/{char}" if char in FILLETS_FISH else f"fillets-{lang}/{level}/{char}"
    return {"rel": rel.as_posix(), "speaker": speaker, "language": lang}


def pick_evenly(items: list, n: int | None) -> list:
    """``n`` items spread evenly over ``items`` (all of them when n is None or large)."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def installed_packages() -> list[str]:
    return [p for p in ALLOWED_PACKAGES if package_candidates(p)]


# --------------------------------------------------------------------------------------------
# Splitting at pauses
# --------------------------------------------------------------------------------------------
def find_pauses(active: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` of inactive frames of at least ``min_frames``, between active frames."""
    idx = np.flatnonzero(active)
    if len(idx) < 2:
        return []
    gaps = np.flatnonzero(np.diff(idx) > min_frames)  # idx[g] + 1 .. idx[g + 1] is inactive
    return [(int(idx[g] + 1), int(idx[g + 1])) for g in gaps if idx[g + 1] - idx[g] - 1 >= min_frames]


def split_at_pauses(x: np.ndarray, sr: int = SAMPLE_RATE, max_s: float = MAX_UTT_S, min_s: float = MIN_UTT_S,
                    min_pause_s: float = MIN_PAUSE_S) -> list[tuple[int, int]]:
    """Sample ranges ``[a, b)`` covering ``x``, each at most ``max_s`` long.

    A recording of at most ``max_s`` is one part. A longer one is cut in the middle of its
    longest pause (inactive 10 ms frames, as in trim_and_normalise, for at least
    ``min_pause_s``) that leaves both sides at least ``min_s`` long (ties: the pause nearest the
    middle), and each side is split the same way; a part with no such pause is cut at ``max_s``.
    """
    hop = sr // 100
    active = mc.active_frames(mc.frame_rms_db(np.asarray(x, dtype=np.float64), hop))
    pauses = [(s * hop, e * hop) for s, e in find_pauses(active, int(round(min_pause_s * 100)))]
    max_n, min_n = int(round(max_s * sr)), int(round(min_s * sr))
    parts: list[tuple[int, int]] = []
    todo = [(0, len(x))]
    while todo:
        a, b = todo.pop()
        if b - a <= max_n:
            parts.append((a, b))
            continue
        best = None
        for s, e in pauses:
            if s < a or e > b:
                continue
            cut = (s + e) // 2
            if cut - a < min_n or b - cut < min_n:
                continue
            key = (e - s, -abs(cut - (a + b) / 2))
            if best is None or key > best[0]:
                best = (key, cut)
        cut = best[1] if best is not None else a + max_n
        todo += [(cut, b), (a, cut)]  # the left part is popped first
    return sorted(parts)


# --------------------------------------------------------------------------------------------
# Per recording (runs in worker processes)
# --------------------------------------------------------------------------------------------
def decode(pkg: str, path: Path) -> np.ndarray:
    """Mono float32 samples at 16 kHz."""
    if pkg in ASTERISK_PACKAGES:
        import G722

        pcm = G722.G722(SAMPLE_RATE, 64000).decode(path.read_bytes())
        return np.asarray(pcm, dtype=np.float32) / 32768.0
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = data.mean(axis=1)
    if not np.isfinite(x).all():
        raise ValueError("NaN or infinite samples")
    return _audio.resample(x, int(sr), SAMPLE_RATE)


def slug(speaker: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", speaker.replace("/", "_"))


def segment_id(pkg: str, rel: str, index: int) -> str:
    return hashlib.sha1(f"{pkg}\0{rel}\0{index}".encode()).hexdigest()[:12]


def to_pcm16(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip(y, -1.0, 1.0) * 32767.0).astype(np.int16)


def pcm_sha1(pcm: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(pcm, dtype="<i2").tobytes()).hexdigest()


def read_valid_wav(path: Path) -> np.ndarray | None:
    """The int16 samples of an existing output wav if it is usable (16 kHz mono PCM16, 1-15 s)."""
    try:
        info = sf.info(str(path))
        if (info.samplerate != SAMPLE_RATE or info.channels != 1 or info.subtype != "PCM_16"
                or not MIN_UTT_S <= info.frames / SAMPLE_RATE <= MAX_UTT_S):
            return None
        pcm, _ = sf.read(str(path), dtype="int16")
    except Exception:
        return None
    return pcm if len(pcm) == info.frames else None


def write_wav(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp_path(path) as tmp:
        sf.write(str(tmp), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def process_file(task: dict) -> dict:
    """Decode, split, trim, normalise and write one recording; the kept segments and counts."""
    pkg, path, out_dir = task["package"], Path(task["path"]), Path(task["out"])
    res = {"segments": [], "too_short": 0, "error": None}
    try:
        x = decode(pkg, path)
    except Exception as exc:  # a broken file is reported, not fatal
        res["error"] = f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"
        return res
    for i, (a, b) in enumerate(split_at_pauses(x)):
        uid = segment_id(pkg, task["rel"], i)
        rel_out = f"wavs/{pkg}/{slug(task['speaker'])}/{uid}.wav"
        out = out_dir / rel_out
        pcm = None if task["force"] or not out.exists() else read_valid_wav(out)
        reused = pcm is not None
        if pcm is None:
            y, _ = mc.trim_and_normalise(x[a:b], SAMPLE_RATE)
            if len(y) < MIN_UTT_S * SAMPLE_RATE:
                res["too_short"] += 1
                out.unlink(missing_ok=True)
                continue
            pcm = to_pcm16(y)
            write_wav(out, pcm)
        res["segments"].append({"path": rel_out, "id": uid, "segment": i, "duration": round(len(pcm) / SAMPLE_RATE, 3),
                                "sha1": pcm_sha1(pcm), "reused": reused})
    return res


# --------------------------------------------------------------------------------------------
# Held-out speakers
# --------------------------------------------------------------------------------------------
def speaker_order(speakers, seed: int) -> list[str]:
    return sorted(speakers, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())


def assign_splits(seconds: dict[str, float], val_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """(train speakers, val speakers): whole speakers are held out, in sha1(seed:speaker) order,
    skipping any speaker with more than MAX_VAL_SPEAKER_SHARE of all audio, until validation
    holds at least ``val_fraction`` of it."""
    total = sum(seconds.values())
    val: set[str] = set()
    held = 0.0
    for spk in speaker_order(seconds, seed):
        if held >= val_fraction * total or val_fraction <= 0:
            break
        if seconds[spk] > MAX_VAL_SPEAKER_SHARE * total:
            continue
        val.add(spk)
        held += seconds[spk]
    train = set(seconds) - val
    assert not (train & val) and train | val == set(seconds), "a speaker must be in exactly one split"
    return train, val


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (e.g. data/real)")
    ap.add_argument("--sources", default=None,
                    help="comma-separated package names (default: every allowed package that is installed)")
    ap.add_argument("--max-files", type=int, default=None, help="at most N recordings per package (spread evenly)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the held-out speaker order (default 0)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--val-fraction", type=float, default=0.08,
                    help="share of the hours held out as whole speakers (default 0.08)")
    ap.add_argument("--force", action="store_true", help="rebuild wavs that already exist")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    if args.max_files is not None and args.max_files < 1:
        ap.error("--max-files must be >= 1")
    if not 0.0 <= args.val_fraction < 0.5:
        ap.error("--val-fraction must be in [0, 0.5)")
    return args


def resolve_sources(spec: str | None) -> tuple[list[str], dict[str, str]]:
    """(packages to read, {absent package: why}); raises ValueError / MissingPackage (one line)."""
    if spec is None:
        have = installed_packages()
        absent = {p: "not installed" + (" (not in Debian 12)" if p in NOT_IN_DEBIAN_12 else "")
                  for p in ALLOWED_PACKAGES if p not in have}
        return have, absent
    asked = list(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    unknown = [p for p in asked if p not in ALLOWED_PACKAGES]
    if unknown or not asked:
        raise ValueError(f"make_real_corpus: --sources: unknown package {' '.join(unknown) or '(none given)'}; "
                         f"allowed: {','.join(ALLOWED_PACKAGES)}")
    missing = [p for p in asked if not package_candidates(p)]
    if missing:
        note = " (not in Debian 12)" if set(missing) & NOT_IN_DEBIAN_12 else ""
        raise MissingPackage(f"make_real_corpus: package not installed{note}: {' '.join(missing)}; "
                             f"install with: {mc.apt_line(missing)}")
    return asked, {}


def write_jsonl(path: Path, records: list[dict]) -> None:
    with temp_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _stats(recs: list[dict]) -> dict:
    return {"hours": round(sum(r["duration"] for r in recs) / 3600, 4), "utterances": len(recs),
            "speakers": len({r["speaker"] for r in recs})}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        sources, absent = resolve_sources(args.sources)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_ARGS
    except MissingPackage as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_MISSING
    if any(p in ASTERISK_PACKAGES for p in sources):
        try:
            import G722  # noqa: F401
        except ImportError:
            print("make_real_corpus: the G.722 decoder is missing; install with: pip install g722", file=sys.stderr)
            return EXIT_MISSING
    if not sources:
        print("make_real_corpus: none of the allowed packages is installed; install with: "
              + mc.apt_line([p for p in ALLOWED_PACKAGES if p not in NOT_IN_DEBIAN_12]), file=sys.stderr)
        return EXIT_MISSING

    t0 = time.time()
    out: Path = args.out.resolve()
    per_src: dict[str, dict] = {}
    tasks: list[dict] = []
    for pkg in sources:
        skipped: Counter = Counter()
        usable = []
        for path in package_candidates(pkg):
            c = classify(pkg, path)
            if isinstance(c, str):
                skipped[c] += 1
            else:
                usable.append({"package": pkg, "path": str(path), "out": str(out), "force": args.force, **c})
        chosen = pick_evenly(usable, args.max_files)
        per_src[pkg] = {"files": len(usable) + sum(skipped.values()), "files_usable": len(usable),
                        "files_read": len(chosen), "skipped": dict(sorted(skipped.items())), "unreadable": [],
                        "too_short": 0, "duplicates": 0}
        tasks += chosen
    (out / "wavs").mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    bar = tqdm(total=len(tasks), unit="file", desc="recordings", disable=args.no_progress, dynamic_ncols=True,
               mininterval=0.2 if sys.stderr.isatty() else 30.0)
    pool = ProcessPoolExecutor(max_workers=args.jobs) if args.jobs > 1 else None
    results = pool.map(process_file, tasks, chunksize=8) if pool else map(process_file, tasks)
    seen: set[str] = set()
    records: list[dict] = []
    written = reused = 0
    try:
        for task, res in zip(tasks, results):
            bar.update(1)
            st = per_src[task["package"]]
            st["too_short"] += res["too_short"]
            if res["error"]:
                st["unreadable"].append(f"{task['rel']}: {res['error']}")
                continue
            for seg in res["segments"]:
                if seg["sha1"] in seen:
                    st["duplicates"] += 1
                    (out / seg["path"]).unlink(missing_ok=True)
                    continue
                seen.add(seg["sha1"])
                reused += seg["reused"]
                written += not seg["reused"]
                records.append({"path": seg["path"], "speaker": task["speaker"], "source": task["package"],
                                "language": task["language"], "duration": seg["duration"], "orig": task["path"],
                                "segment": seg["segment"], "id": seg["id"]})
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)

    seconds: dict[str, float] = defaultdict(float)
    for r in records:
        seconds[r["speaker"]] += r["duration"]
    train_spk, val_spk = assign_splits(seconds, args.val_fraction, args.seed)
    train = [r for r in records if r["speaker"] in train_spk]
    val = [r for r in records if r["speaker"] in val_spk]
    write_jsonl(out / "manifest.jsonl", train)
    write_jsonl(out / "manifest_val.jsonl", val)

    total_h = sum(seconds.values()) / 3600
    sources_summary = {}
    for pkg, st in per_src.items():
        recs = [r for r in records if r["source"] == pkg]
        sources_summary[pkg] = {**_stats(recs), **st,
                                "train": _stats([r for r in recs if r["speaker"] in train_spk]),
                                "val": _stats([r for r in recs if r["speaker"] in val_spk])}
    val_h = sum(seconds[s] for s in val_spk) / 3600
    summary = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sources": sources_summary,
        "total": {**_stats(records), "too_short": sum(s["too_short"] for s in per_src.values()),
                  "duplicates": sum(s["duplicates"] for s in per_src.values()),
                  "unreadable": sum(len(s["unreadable"]) for s in per_src.values()),
                  "files_read": len(tasks)},
        "splits": {"train": _stats(train), "val": _stats(val)},
        "val_fraction": {"target": args.val_fraction, "reached": round(val_h / total_h, 4) if total_h else 0.0},
        "val_speakers": sorted(val_spk),
        "packages_absent": absent,
        "wavs_written": written,
        "wavs_reused": reused,
        "wall_seconds": round(time.time() - t0, 1),
    }
    with temp_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(summary)
    if not records:
        print("make_real_corpus: no utterance was kept", file=sys.stderr)
        return 1
    return 0


def print_table(s: dict) -> None:
    rows = [(pkg, v) for pkg, v in s["sources"].items()] + [("total", {**s["total"], **s["splits"]})]
    print(f"{'source':31s} {'hours':>7s} {'utts':>6s} {'spk':>4s} {'train h/utts':>14s} {'val h/utts':>12s}")
    for name, v in rows:
        tr, va = v["train"], v["val"]
        print(f"{name:31s} {v['hours']:7.3f} {v['utterances']:6d} {v['speakers']:4d} "
              f"{tr['hours']:7.3f}/{tr['utterances']:<6d} {va['hours']:6.3f}/{va['utterances']:<5d}")
    t = s["total"]
    print(f"dropped: {t['too_short']} too short, {t['duplicates']} duplicates, {t['unreadable']} unreadable; "
          f"val {s['val_fraction']['reached']:.1%} of hours (target {s['val_fraction']['target']:.0%}), "
          f"{len(s['val_speakers'])} held-out speakers; {s['wavs_written']} wavs written, "
          f"{s['wavs_reused']} reused; {s['wall_seconds']:.0f} s")
    for pkg, why in s["packages_absent"].items():
        print(f"absent: {pkg}: {why}")


if __name__ == "__main__":
    sys.exit(main())
