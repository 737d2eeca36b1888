"""``hasrd speak-to-audio``: a spoken prompt ("a bell ringing", said aloud) -> the sound it asks
for, with a speech-to-audio model trained by train.py (``task: star``, :mod:`hasrd.star`; no
speech recogniser in between). Mono output at the codec's sample rate (docs/star.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, UsageError, one_line
from hasrd.cli.jobs import AUDIO_OUT_FORMATS
from hasrd.cli.loading import load_checked

#: the longest output (seconds); hasrd.star.pipeline.MAX_SECONDS, repeated here so that the
#: parser needs no torch
MAX_SECONDS = 30.0


def cmd_speak_to_audio(args: argparse.Namespace) -> int:
    import math
    import sys

    import numpy as np

    if args.steps < 1:
        raise UsageError(f"--steps {args.steps}: must be >= 1")
    if not (math.isfinite(args.seconds) and 0 < args.seconds <= MAX_SECONDS):
        raise UsageError(f"--seconds {args.seconds:g}: must be > 0 and at most {MAX_SECONDS:g}")
    if not math.isfinite(args.guidance):
        raise UsageError(f"--guidance {args.guidance}: must be a finite number")
    out = Path(args.output)
    if out.suffix.lower() not in AUDIO_OUT_FORMATS:
        raise UsageError(f"-o {out}: the output must be a {', '.join(AUDIO_OUT_FORMATS)} file")
    if out.exists() and not args.force:
        raise UsageError(f"output {out} exists (use --force to overwrite it)")
    if out.parent and not out.parent.is_dir():
        raise UsageError(f"-o {out}: no such folder {out.parent}")

    from hasrd.io.audio import AudioError, load_audio, save_audio
    from hasrd.star.pipeline import StageOneError, load_speak_to_audio
    from hasrd.star.prompt_check import check_prompt

    src = Path(args.prompt)
    if src.resolve() == out.resolve():
        raise UsageError("the output would overwrite the prompt")
    try:
        audio, sr = load_audio(src, mono=True)
    except (AudioError, OSError) as exc:
        print(f"hasrd: error: {one_line(str(exc) if str(src) in str(exc) else f'{src}: {exc}')}", file=sys.stderr)
        return EXIT_FAILED
    try:
        check_prompt(audio[0], sr)
    except ValueError as exc:
        print(f"hasrd: error: {src}: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    model = load_checked(load_speak_to_audio, args.model, args.device, "speech-to-audio model")
    if model.stage != 2:
        raise UsageError(f"{args.model}: a stage-1 STAR export (the bridge only) cannot generate; "
                         "train stage 2 with train.init_from=RUN1/export")
    try:
        y, rate = model.generate(audio[0], sr, seconds=args.seconds, steps=args.steps, seed=args.seed,
                                 guidance=args.guidance)
    except StageOneError as exc:
        raise UsageError(f"{args.model}: {exc}") from None
    if not np.isfinite(y).all():
        print(f"hasrd: error: {src}: the model produced non-finite audio", file=sys.stderr)
        return EXIT_FAILED
    # save_audio writes to a temp name in the same folder and renames it into place
    save_audio(out, y[None], rate, subtype=AUDIO_OUT_FORMATS[out.suffix.lower()][1])
    print(f"{src} -> {out} ({y.size / rate:.2f} s at {rate} Hz; heard as {model.classify_prompt(audio[0], sr)!r})",
          file=sys.stderr)
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("speak-to-audio", help="a spoken description of a sound -> that sound (STAR-style model)",
                       description="Say the sound you want (e.g. a WAV of you saying 'a bell ringing'); a model "
                       "trained by train.py (task: star) turns the speech into a vector of the semantic space "
                       "(no speech recogniser), a flow-matching generator makes the codec latent of the sound, "
                       "the codec decodes it. The prompt must be speech: empty, silent and non-speech prompts "
                       "are refused (docs/star.md).")
    p.add_argument("prompt", metavar="PROMPT.wav", help="the spoken prompt (any rate; mono mix)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="the output file (.wav, .flac or .ogg)")
    p.add_argument("--model", required=True, metavar="DIR", help="a STAR export folder (a stage-2 run's export/)")
    p.add_argument("--steps", type=int, default=16, help="Euler ODE steps (default 16)")
    p.add_argument("--seconds", type=float, default=4.0, help=f"length of the output (default 4, at most {MAX_SECONDS:g})")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (default 2; 1 = off)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=cmd_speak_to_audio)
