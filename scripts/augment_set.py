#!/usr/bin/env python3
"""Write a fixed channel-augmented copy of a speech set, to measure a codec on rooms, colours,
band limits and noise its clean validation set does not have.

Every file goes through one random recording channel of :class:`hasrd.train.augment.ChannelAugment`
(the same stages as ``train.augment``), drawn from a generator seeded by ``--seed`` and the file's
position, so the copy is the same on every machine. Texts and other manifest fields are kept::

    python scripts/augment_set.py /work/data/corpus/manifest_val.jsonl --out /work/data/val_aug

writes ``OUT/wavs/NNNN.wav`` and ``OUT/manifest.jsonl`` (use it as ``evaluate.py --data``). The
folder is built beside ``OUT`` and renamed into place at the end, so a failed run leaves nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

# the stage settings of the copy; each can be changed on the command line
DEFAULTS = {"p_reverb": 0.5, "p_eq": 1.0, "p_lowpass": 0.5, "p_noise": 0.3, "snr_db": [30.0, 50.0]}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a JSONL/TSV manifest or a folder of audio files")
    p.add_argument("--out", required=True, help="output folder (must not exist)")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a ChannelAugment setting (YAML value), e.g. --set p_noise=0 --set 'rt60=[0.2,0.8]'; "
                        f"defaults {DEFAULTS}")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import soundfile as sf
    import yaml
    from tqdm import tqdm

    from hasrd.io.audio import load_audio
    from hasrd.io.manifest import ManifestError, read_manifest
    from hasrd.train.augment import ChannelAugment

    out = Path(args.out)
    try:
        settings = dict(DEFAULTS)
        for item in args.set:
            if "=" not in item:
                raise ValueError(f"--set {item!r} is not KEY=VALUE")
            key, raw = item.split("=", 1)
            settings[key.strip()] = yaml.safe_load(raw)
        aug = ChannelAugment.from_config(settings)
        if aug is None:
            raise ValueError("--set left no stage on")
        if out.exists():
            raise ValueError(f"{out} already exists")
        entries = read_manifest(args.data)
        if not entries:
            raise ValueError(f"{args.data}: no audio files")
    except (ValueError, ManifestError) as exc:
        print(f"augment_set: {exc}", file=sys.stderr)
        return 2

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "wavs").mkdir()
        with open(tmp / "manifest.jsonl", "w", encoding="utf-8") as fh:
            for i, e in enumerate(tqdm(entries, desc="augment", unit="file")):
                audio, sr = load_audio(e.path)
                x = audio[0]  # load_audio has already mixed the channels to one
                y = aug(x, sr, np.random.default_rng([args.seed, i]))
                peak = float(np.abs(y).max())
                if peak > 0.99:  # a room or a boost may push a loud file over full scale
                    y = y * (0.99 / peak)
                rel = f"wavs/{i:04d}.wav"
                sf.write(tmp / rel, y, sr, subtype="PCM_16")
                row = {"path": rel, **({"text": e.text} if e.text is not None else {}),
                       **{k: v for k, v in e.extra.items() if isinstance(v, (str, int, float, bool))},
                       "source_path": str(e.path)}
                fh.write(json.dumps(row) + "\n")
        with open(tmp / "augment.json", "w", encoding="utf-8") as fh:
            json.dump({"seed": args.seed, "settings": settings, "source": str(args.data)}, fh, indent=1)
        os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        print(f"augment_set: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(entries)} files to {out} (manifest {out / 'manifest.jsonl'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
