"""Noisy/clean pairs for speech enhancement, built offline.

``python -m hasrd.enhance.recipe --speech CORPUS --out DIR [--snrs -5,0,5,10,15] [--noises all]``

Each speech file (a folder, or a JSONL/TSV manifest such as the one ``scripts/make_corpus.py``
writes) is mixed with ``--versions`` noises, each of a random kind from :mod:`hasrd.enhance.noise`
at a random SNR from ``--snrs`` (measured against the speech's active level). Writes::

    DIR/clean/<id>.wav           the speech, scaled like its mixtures (16-bit PCM)
    DIR/noisy/<id>_v<k>.wav      speech + noise
    DIR/manifest.jsonl           {"path": clean, "noisy": noisy, "snr": dB, "noise": kind, "text": ...}

The manifest is what ``train.py`` (``task: enhance``) and ``evaluate.py --data`` read. The whole
folder is built under a temporary name and renamed at the end: an interrupted run leaves no DIR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..io.atomic import temp_dir
from .noise import NOISES, make_noise, noise_at_snr, peak_gain


def float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one SNR")
    return values


def noise_kinds(text: str) -> list[str]:
    kinds = list(NOISES) if text == "all" else [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in NOISES]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown noise kind(s) {bad}; known: all, {', '.join(NOISES)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hasrd.enhance.recipe",
                                description="Mix speech with generated noise at several SNRs: noisy/clean pairs for enhancement.")
    p.add_argument("--speech", required=True, metavar="DIR|MANIFEST", help="speech: a folder of audio files or a JSONL/TSV manifest")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --force)")
    p.add_argument("--snrs", type=float_list, default=[-5.0, 0.0, 5.0, 10.0, 15.0], metavar="LIST",
                   help="SNRs in dB to draw from (default -5,0,5,10,15)")
    p.add_argument("--noises", type=noise_kinds, default=list(NOISES), metavar="LIST",
                   help=f"noise kinds to draw from: all (default) or some of {','.join(NOISES)}")
    p.add_argument("--versions", type=int, default=1, metavar="K", help="noisy versions of each utterance (default 1)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N utterances (after shuffling with --seed)")
    p.add_argument("--min-seconds", type=float, default=1.0, metavar="S", help="skip utterances shorter than S (default 1)")
    p.add_argument("--max-seconds", type=float, default=8.0, metavar="S", help="crop utterances to at most S (default 8)")
    p.add_argument("--sample-rate", type=int, default=16000, metavar="SR", help="output sample rate (default 16000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _speech_entries(src: Path):
    from hasrd.io.manifest import read_manifest, read_transcripts

    entries = read_manifest(src)
    texts = {}
    if src.is_dir() and (src / "transcripts.tsv").is_file():
        texts = read_transcripts(src / "transcripts.tsv")
    return [(e.path, e.text or texts.get(e.path.stem)) for e in entries]


def _unique_id(path: Path, used: set[str]) -> str:
    base = path.stem
    uid, k = base, 1
    while uid in used:
        k += 1
        uid = f"{base}_{k}"
    used.add(uid)
    return uid


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hasrd.io.audio import load_audio, save_audio

    out = Path(args.out)
    if args.versions < 1:
        raise ValueError(f"--versions {args.versions}: must be at least 1")
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists (use --force to replace it)")
    entries = _speech_entries(Path(args.speech))
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]
    if args.limit is not None:
        entries = entries[: max(0, args.limit)]
    sr = int(args.sample_rate)

    # babble comes from other utterances of the same set: keep a pool of a few dozen in memory
    pool: list[np.ndarray] = []
    if "babble" in args.noises:
        for path, _ in entries[:48]:
            a, _ = load_audio(path, sample_rate=sr, mono=True)
            pool.append(a[0])

    rows, used, skipped = [], set(), 0
    with temp_dir(out) as tmp:
        (tmp / "clean").mkdir()
        (tmp / "noisy").mkdir()
        for path, text in tqdm(entries, desc="mixing", unit="utt", disable=not args.progress, file=sys.stderr):
            audio, _ = load_audio(path, sample_rate=sr, mono=True)
            speech = audio[0][: int(args.max_seconds * sr)]
            if speech.size < args.min_seconds * sr or not np.any(speech):
                skipped += 1
                continue
            uid = _unique_id(Path(path), used)
            # one clean file per utterance, scaled with all its mixtures by one gain (none clips)
            drawn = []
            for k in range(args.versions):
                kind, snr = str(rng.choice(args.noises)), float(rng.choice(args.snrs))
                noise = make_noise(kind, speech.size, sr, rng, speech=pool or None)
                drawn.append((k, kind, snr, speech + noise_at_snr(speech, noise, snr, sr)))
            gain = peak_gain([m[3] for m in drawn])
            clean = (speech * gain).astype(np.float32)
            clean_rel = Path("clean") / f"{uid}.wav"
            save_audio(tmp / clean_rel, clean[None], sr)
            for k, kind, snr, noisy in drawn:
                noisy_rel = Path("noisy") / f"{uid}_v{k}.wav"
                save_audio(tmp / noisy_rel, (noisy * gain).astype(np.float32)[None], sr)
                row = {"path": str(clean_rel), "noisy": str(noisy_rel), "snr": snr, "noise": kind,
                       "duration": round(clean.size / sr, 3), "source": str(path)}
                if text:
                    row["text"] = text
                rows.append(row)
        if not rows:
            raise ValueError(f"{args.speech}: no usable speech (all files shorter than {args.min_seconds:g} s or silent)")
        with open(tmp / "manifest.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        info = {"speech": str(args.speech), "snrs": args.snrs, "noises": args.noises, "versions": args.versions,
                "seed": args.seed, "sample_rate": sr, "pairs": len(rows), "skipped": skipped}
        (tmp / "recipe.json").write_text(json.dumps(info, indent=2) + "\n")
    hours = sum(r["duration"] for r in rows) / 3600
    print(f"wrote {len(rows)} noisy/clean pairs ({hours:.2f} h of noisy speech) to {out} "
          f"({skipped} utterances skipped)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return build(args)
    except (ValueError, OSError) as exc:
        print(f"recipe: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
