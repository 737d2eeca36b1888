"""``hasrd eval`` (= evaluate.py, ``hasrd.eval``) and ``hasrd demo`` (encode the shipped speech at
several bitrates, decode it, then the evaluator on the same model and speech)."""
from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Callable

from hasrd.cli.errors import EXIT_OK, UsageError
from hasrd.cli.loading import MODEL_HELP, load_model


def cmd_eval(args: argparse.Namespace) -> int:
    from hasrd.eval import main as eval_main

    return eval_main(args.rest, prog="hasrd eval")


def cmd_demo(args: argparse.Namespace, main: Callable[[list[str]], int]) -> int:
    """encode -> token files -> decode -> wav, then the evaluator on the same model and speech.

    ``main`` is the whole command line (:func:`hasrd.cli.main`, handed over by ``add_parser``, as
    ``hasrd.cli`` imports this module): encode and decode run as a user runs them.
    """
    from hasrd.eval.data import DEFAULT_EVAL_DIR
    from hasrd.io.tokenfile import load_tokens

    out = Path(args.output)
    data = Path(args.data) if args.data else DEFAULT_EVAL_DIR
    codec = load_model(args.model, "cpu")
    if codec.continuous:
        raise UsageError(f"the model {args.model or 'default'} is a continuous codec: the demo compares codebook "
                         "counts; use hasrd encode --continuous, hasrd decode and evaluate.py --model")
    n_all = codec.num_codebooks
    if args.n_q:
        try:
            n_qs = sorted({int(v) for v in args.n_q.split(",")})
        except ValueError:
            raise UsageError(f"--n-q takes comma-separated integers, got {args.n_q!r}") from None
    else:
        n_qs = sorted({n for n in (1, 2, 3, n_all) if n <= n_all})
    if args.baselines and args.baselines != "none":  # a bad spec is refused before any encoding
        from hasrd.eval.systems import SystemUnavailable, parse_baseline

        for spec in args.baselines.split(","):
            try:
                parse_baseline(spec)
            except SystemUnavailable:
                pass  # the evaluator reports it as a skip line, as everywhere
            except ValueError as exc:
                raise UsageError(f"--baselines {spec}: {exc}") from None
    model_args = ["--model", args.model] if args.model else []
    force = ["--force"] if args.force else []
    print(f"hasrd demo: {codec.codec_name} codec, {codec.frame_rate:g} Hz frames, {n_all} codebooks; speech from {data}")
    for n in n_qs:
        tok, wav = out / "tokens" / f"nq{n}", out / "decoded" / f"nq{n}"
        code = main(["encode", str(data), "-o", str(tok), "--n-q", str(n), *model_args, *force])
        if code == EXIT_OK:
            code = main(["decode", str(tok), "-o", str(wav), *model_args, *force])
        if code != EXIT_OK:
            return code
        files = sorted(tok.rglob("*.hsrd"))
        size = sum(f.stat().st_size for f in files)
        seconds = sum(load_tokens(f)[1]["duration"] for f in files)
        print(f"  n_q={n}: {len(files)} token files, nominal {codec.bitrate(n) / 1000:.2f} kbps, "
              f"actual {size * 8 / max(seconds, 1e-9) / 1000:.2f} kbps -> {wav}")
    from hasrd.eval import main as eval_main

    ev = ["--model", args.model or "default", "--data", str(data), "--n-q", ",".join(map(str, n_qs)),
          "--output", str(out / "eval")]
    if args.baselines and args.baselines != "none":
        ev += ["--baselines", args.baselines]
    code = eval_main(ev, prog="hasrd demo")
    if code == EXIT_OK:
        print(f"hasrd demo: token files in {out / 'tokens'}, wavs in {out / 'decoded'}, table and plot in {out / 'eval'}")
    return code


def add_eval_parser(sub) -> None:
    ev = sub.add_parser("eval", help="bitrate vs WER, MOS and fidelity against other codecs (= evaluate.py)",
                        add_help=False)
    ev.add_argument("rest", nargs=argparse.REMAINDER)
    ev.set_defaults(func=cmd_eval)


def add_parser(sub, main: Callable[[list[str]], int]) -> None:
    demo = sub.add_parser("demo", help="the main job: encode the shipped speech, decode it, measure it, plot it",
                          description="Encode the shipped sample speech to token files at several bitrates, decode "
                          "them to wav, and report bitrate and quality (STOI, PESQ, DNSMOS, WER) beside codec2 "
                          "and opus, with a rate-quality plot.")
    demo.add_argument("-o", "--output", default="out/demo", metavar="OUT", help="output folder (default out/demo)")
    demo.add_argument("--model", default=None, metavar="DIR", help=MODEL_HELP)
    demo.add_argument("--n-q", default=None, metavar="LIST",
                      help="codebook counts, comma-separated (default: 1, 2, 3 and all)")
    demo.add_argument("--baselines", default="codec2:3200,opus:6000", metavar="LIST",
                      help="baselines for the same table (default codec2:3200,opus:6000; 'none' for none)")
    demo.add_argument("--data", default=None, metavar="DIR", help="speech to use (default: the shipped evaluation set)")
    demo.add_argument("--force", action="store_true", help="redo token files and wavs that exist")
    demo.set_defaults(func=functools.partial(cmd_demo, main=main))
