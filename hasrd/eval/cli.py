"""``python evaluate.py`` / ``hasrd eval``: the command line of the evaluator."""
from __future__ import annotations

import argparse
import sys

from .options import EvalError, EvalOptions

EPILOG = """\
examples:
  python evaluate.py --model default --n-q 1,2,4,8 --output out/eval
  python evaluate.py --baselines codec2:3200,opus:6000 --output out/eval_baselines
  python evaluate.py --model runs/x/export --data my_corpus/ --transcripts my.tsv \\
      --asr /models/whisper-small --speaker /models/wavlm-base-plus-sv --output out/x

The default data set is hasrd/assets/eval (13 utterances of real speech, evaluation only).
Baselines: codec2:MODE, opus:BPS, encodec:BPS[@weights.th], dac:BPS[@weights.pth],
hf:DIR_OR_HUB_ID[@BITRATE] (a transformers audio codec: EncodecModel, DacModel, MimiModel,
XcodecModel; a hub id must be in the local hub cache, e.g. hf:facebook/encodec_24khz@1.5kbps),
spectral-gating[:stationary] (classical speech enhancement, noisereduce).
Speech enhancement: a JSONL manifest whose lines also name a "noisy" file makes every system
process the noisy audio and be scored against the clean "path"; an 'input' row (the noisy audio
itself) comes first and the report adds the gains over it (see docs/evaluation.md).
A baseline or judge that cannot run here prints one 'skip' line; the run goes on.
"""


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("n_q values must be positive integers")
    return sorted(set(values))


def seed_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds (integers >= 0), got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds (integers >= 0), got {text!r}")
    return list(dict.fromkeys(values))


def str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "evaluate.py", description="Evaluate hasrd codecs and baselines on real speech: bitrate, "
        "fidelity (PESQ, STOI, SI-SDR, mel), DNSMOS, WER/CER, speaker similarity, disentanglement probes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], metavar="DIR|default",
                   help="a hasrd model folder (save_pretrained), a hub id org/name in the local hub cache, or 'default'; "
                   "repeat to compare models")
    p.add_argument("--data", default=None, metavar="DIR|MANIFEST|FILE",
                   help="audio folder, JSONL/TSV or Lhotse manifest, hf-dataset:NAME_OR_PATH[:SPLIT][?streaming=1] "
                   "or one audio file (default: the bundled evaluation set)")
    p.add_argument("--transcripts", default=None, metavar="TSV", help="name<TAB>text transcripts, keyed by file stem")
    p.add_argument("--n-q", type=int_list, default=[1, 2, 4, 8], metavar="LIST",
                   help="codebook counts to decode hasrd models with (default 1,2,4,8)")
    p.add_argument("--bound", action="store_true",
                   help="also score each token model's decoder on its encoder's unquantised output (a bound, not a codec)")
    p.add_argument("--baselines", type=str_list, default=[], metavar="LIST",
                   help="comma-separated: codec2:3200, opus:6000, encodec:1500[@W], dac:8kbps[@W], "
                   "hf:DIR_OR_HUB_ID[@BITRATE] (a transformers EnCodec/DAC/Mimi/X-Codec), ...")
    p.add_argument("--enhancer", action="append", default=[], metavar="DIR",
                   help="a hasrd.enhance speech-enhancement model folder; repeat to compare enhancers")
    p.add_argument("--lm", action="append", default=[], metavar="DIR",
                   help="a token LM (repeatable): evaluate its tasks on a task manifest given as --data "
                        "(python -m hasrd.lm.recipe --each; docs/lm.md); --enhancer and --baselines join the se rows")
    p.add_argument("--lm-greedy", action="store_true", help="with --lm: also a greedy-decoding row per LM")
    p.add_argument("--lm-seeds", type=seed_list, default=[0], metavar="LIST",
                   help="with --lm: sample each LM once per seed, e.g. 0,1,2 (default 0); the summary pools them "
                        "and reports the spread over seeds")
    p.add_argument("--star", action="append", default=[], metavar="DIR",
                   help="a speech-to-audio export (repeatable): generate from the spoken prompts of --data "
                        "(python -m hasrd.events.prompts), judge the clips with --judge; docs/star.md")
    p.add_argument("--judge", default="runs/event_judge", metavar="DIR",
                   help="with --star: the sound-event judge (python -m hasrd.events.judge; default runs/event_judge)")
    p.add_argument("--events-eval", default="data/events/manifest_eval.jsonl", metavar="MANIFEST",
                   help="with --star: the real held-out events (default data/events/manifest_eval.jsonl)")
    p.add_argument("--star-seconds", type=float, default=4.0, help="with --star: seconds per generated clip (4)")
    p.add_argument("--star-steps", type=int, default=16, help="with --star: ODE steps (16)")
    p.add_argument("--star-guidance", type=float, default=2.0, help="with --star: classifier-free guidance (2; 1 = off)")
    p.add_argument("--asr", default="pocketsphinx", metavar="pocketsphinx|DIR|none",
                   help="speech recogniser for WER/CER: pocketsphinx (default) or a local transformers ASR folder")
    p.add_argument("--speaker", default="resemblyzer", metavar="resemblyzer|DIR|none",
                   help="speaker embedder: resemblyzer (default) or a local transformers x-vector folder")
    p.add_argument("--mos", default="dnsmos", choices=["dnsmos", "none"], help="MOS predictor (default dnsmos)")
    p.add_argument("--mos-hook", default=None, metavar="MODULE:FUNC",
                   help="extra MOS predictor, FUNC(audio_16k, 16000) -> float (e.g. a UTMOS wrapper)")
    p.add_argument("--no-probes", dest="probes", action="store_false", help="skip the disentanglement probes")
    p.add_argument("--jobs", type=int, default=2, help="metric worker processes (default 2; 1 = in-process)")
    p.add_argument("--max-delay-ms", type=float, default=100.0, help="delay search range, +- ms (default 100)")
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    p.add_argument("--save-audio", action="store_true", help="also write decoded audio to OUTPUT/audio/")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--output", "-o", required=True, metavar="OUT", help="output folder")
    return p


def _refused_options(args) -> str | None:
    """What the command line alone can refuse, before anything is loaded or scored."""
    import math
    from pathlib import Path

    if Path(args.output).exists() and not Path(args.output).is_dir():
        return f"--output {args.output} exists and is not a folder"
    if args.limit is not None and args.limit < 1:
        return f"--limit {args.limit}: must be a number of utterances >= 1"
    if not (math.isfinite(args.max_delay_ms) and args.max_delay_ms >= 0):
        return f"--max-delay-ms {args.max_delay_ms:g}: must be a number of milliseconds >= 0"
    return None


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run an evaluation; returns the process exit code (0 ok, 2 usage or input error).

    ``prog`` names the command in usage messages (``hasrd eval`` passes its own name).
    """
    args = build_parser(prog).parse_args(argv)
    opts = EvalOptions(
        output=args.output, models=args.model, data=args.data, transcripts=args.transcripts, n_q=args.n_q, bound=args.bound,
        baselines=args.baselines, enhancers=args.enhancer, asr=args.asr, speaker=args.speaker, mos=args.mos,
        mos_hook=args.mos_hook, probes=args.probes, jobs=args.jobs, max_delay_ms=args.max_delay_ms, limit=args.limit,
        save_audio=args.save_audio, progress=args.progress,
    )
    problem = _refused_options(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.star:
        from .star import StarEvalError, run_star_evaluation, star_markdown, summarize_star, write_star_report

        if not args.data:
            print("error: --star needs --data: a spoken-prompt manifest (python -m hasrd.events.prompts)", file=sys.stderr)
            return 2
        try:
            result = run_star_evaluation(args.star, args.data, args.events_eval, args.judge, asr=args.asr,
                                         seconds=args.star_seconds, steps=args.star_steps, guidance=args.star_guidance,
                                         limit=args.limit, progress=args.progress)
        except (StarEvalError, EvalError, FileNotFoundError) as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
        files = write_star_report(result, opts.output)
        print(star_markdown(result, summarize_star(result)))
        print("wrote " + ", ".join(str(p) for p in files.values()))
        return 0
    if args.lm:
        from .tasks import run_task_evaluation, summarize_tasks, task_markdown, write_task_report

        try:
            result = run_task_evaluation(opts, args.lm, args.lm_greedy, args.lm_seeds)
        except EvalError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        files = write_task_report(result, opts.output)
        print(task_markdown(result, summarize_tasks(result)))
        print("wrote " + ", ".join(str(p) for p in files.values()))
        return 0
    from .report import markdown, summarize, write_report
    from .run import run_evaluation

    try:
        result = run_evaluation(opts)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = write_report(result, opts.output, opts)
    print(markdown(result, summarize(result), opts))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0
