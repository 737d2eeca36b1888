#!/usr/bin/env python3
"""Write the golden output of a built-in model (``tests/pretrained/golden_<name>.npz``).

Run it after the shipped weights change, and commit the result with the weights::

    python scripts/make_golden.py                       # the default model
    python scripts/make_golden.py --model hcodec-25hz

The file holds the clip (the first ``--seconds`` of a bundled evaluation utterance, so the test
needs no synthesiser), the model's fingerprint, the codes at every ``n_q`` and the decoded audio
from all codebooks; ``tests/pretrained/test_builtin_models.py`` checks the shipped weights still
reproduce them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = ROOT / "tests" / "pretrained"
CLIP = ROOT / "hasrd" / "assets" / "eval" / "cmu_goforward.wav"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--model", default="default", help="a built-in model's name (default: default)")
    p.add_argument("--output", default=None, help="default: tests/pretrained/golden_<model>.npz")
    args = p.parse_args()
    from hasrd.codecs import BUILTIN_MODELS, load_codec

    if args.model not in BUILTIN_MODELS:
        p.error(f"--model {args.model}: not a built-in model ({', '.join(BUILTIN_MODELS)})")
    args.output = args.output or str(GOLDEN_DIR / f"golden_{args.model}.npz")
    from hasrd.io.audio import load_audio

    torch.set_num_threads(1)
    codec = load_codec(args.model)
    audio, _ = load_audio(CLIP, codec.sample_rate)
    clip = audio[:1, : int(args.seconds * codec.sample_rate)].astype(np.float32)
    x = torch.from_numpy(clip).unsqueeze(0)
    with torch.inference_mode():
        codes = codec.encode(x)
        decoded = codec.decode(codes)[0, 0, : clip.shape[-1]].numpy()
    np.savez_compressed(args.output, clip=clip[0], codes=codes[0].numpy().astype(np.int16),
                        decoded=decoded.astype(np.float32), fingerprint=np.array(codec.fingerprint()))
    print(f"{args.output}: fingerprint {codec.fingerprint()}, codes {tuple(codes.shape[1:])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
