"""``hasrd generate``: input audio -> output audio with a token LM trained by train.py (``task: lm``,
:mod:`hasrd.lm`): the codec encodes the input (and the ``--ref`` clip), the LM generates the
output's tokens, the codec decodes them. Mono output at the input's sample rate."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, JobError, UsageError, one_line
from hasrd.cli.jobs import AUDIO_OUT_FORMATS, Job, make_parent, my_jobs, output_is_file, resolve_jobs, run_jobs
from hasrd.cli.loading import load_checked, resolve_device
from hasrd.dist import distributed, summary
from hasrd.lm.tasks import TASKS


def _frames(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of frames >= 1, got {text!r}")
    return n


def outputs(out: Path, task: str) -> list[Path]:
    """The files one input gives: ``out``, or for ``ss`` ``<stem>_s1<suffix>`` and ``<stem>_s2<suffix>``."""
    if task != "ss":
        return [out]
    return [out.with_name(f"{out.stem}_s{k}{out.suffix}") for k in (1, 2)]


def _generate_file(lm, src: Path, outs: list[Path], task: str, ref, args: argparse.Namespace) -> None:
    """Generate from ``src`` and write ``outs`` (all of them or none: each atomically, after all are made)."""
    import torch

    from hasrd.io.audio import load_audio, resample, save_audio

    audio, sr = load_audio(src, mono=True)
    if audio.shape[-1] == 0:
        raise JobError("empty audio")
    x = resample(audio, sr, lm.sample_rate) if sr != lm.sample_rate else audio
    device = next(lm.parameters()).device
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "greedy": args.greedy,
                "seed": args.seed}
    ys = lm.generate(task, torch.from_numpy(np.ascontiguousarray(x))[None].to(device),
                     ref=None if ref is None else ref.to(device), query=args.query, n_frames=args.n_frames, **sampling)
    waves = []
    for y in ys:
        y = resample(y[0].cpu().numpy(), lm.sample_rate, sr)
        if args.n_frames is None:  # as long as the input
            y = y[:, : audio.shape[-1]]
            y = np.pad(y, ((0, 0), (0, audio.shape[-1] - y.shape[-1])))
        waves.append(y)
    written = []
    try:
        for out, y in zip(outs, waves):
            save_audio(out, y, sr, subtype=AUDIO_OUT_FORMATS.get(out.suffix.lower(), AUDIO_OUT_FORMATS[".wav"])[1])
            written.append(out)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.audio import AUDIO_EXTENSIONS, AudioError, find_audio_files, load_audio
    from hasrd.lm.codec_lm import check_inputs, load_codec_lm

    task = args.task
    try:  # what needs no model first: nothing is loaded or written for a malformed request
        check_inputs(task, args.ref is not None, args.query is not None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.greedy and not args.temperature > 0:
        raise UsageError(f"--temperature {args.temperature:g}: must be > 0 (or use --greedy)")
    if args.top_k < 0 or not 0 < args.top_p <= 1:
        raise UsageError(f"--top-k {args.top_k} --top-p {args.top_p:g}: need top-k >= 0 and 0 < top-p <= 1")
    out_root = Path(args.output)
    out_is_file = output_is_file(args.inputs, out_root, AUDIO_OUT_FORMATS)
    dist = distributed(args.device)
    if dist.world > 1:
        torch.set_num_threads(1)
    lm = load_checked(load_codec_lm, args.model, resolve_device(args.device, dist), "token LM")
    try:
        lm.check_request(task, args.ref is not None, args.query is not None)
    except ValueError as exc:
        raise UsageError(f"{args.model}: {exc}") from None
    ref = None
    if args.ref is not None:
        try:
            r, _ = load_audio(args.ref, lm.sample_rate, mono=True)
        except (AudioError, OSError) as exc:
            raise UsageError(one_line(f"--ref {args.ref}: {exc}")) from None
        if r.shape[-1] == 0 or not np.any(r):
            raise UsageError(f"--ref {args.ref}: empty or silent audio")
        ref = torch.from_numpy(r)[None]
    jobs = resolve_jobs(args.inputs, out_root, out_is_file, find_audio_files,
                        lambda p: p.suffix.lower() in AUDIO_EXTENSIONS, ".wav")
    started = my_jobs(jobs, dist, out_root, out_is_file, "generate")
    if started is None:
        return EXIT_FAILED
    mine, report = started

    def work(job: Job) -> bool:
        outs = outputs(job.out, task)
        if any(p.exists() for p in outs) and not args.force:
            if job.resumable and all(p.exists() for p in outs):  # a folder run that was interrupted
                return False
            raise JobError(f"output {next(p for p in outs if p.exists())} exists (use --force to overwrite it)")
        if any(Path(os.path.abspath(p)) == Path(os.path.abspath(job.src)) for p in outs):
            raise JobError("the output would overwrite the input")
        make_parent(job.out)
        _generate_file(lm, job.src, outs, task, ref, args)
        return True

    done, skipped = run_jobs(mine, report, work)
    summary("generated", done, skipped, report.failed, dist)
    return EXIT_FAILED if report.failed else EXIT_OK


def add_parser(sub) -> None:
    gen = sub.add_parser("generate", help="input audio -> output audio with a token LM (se, tse, ss, vc, lass)",
                         description="Run a token LM trained by train.py (task: lm): the codec encodes the input, "
                         "the LM generates the output's codec tokens (sampled, or --greedy), the codec decodes them. "
                         "Tasks: se (enhance), tse (keep the --ref voice), ss (both voices: OUT_s1, OUT_s2), "
                         "vc (say it in the --ref voice), lass (keep what --query names). Mono output at the input's "
                         "sample rate, as long as the input with --n-frames auto (docs/lm.md).")
    gen.add_argument("inputs", nargs="+", metavar="IN", help="audio files, folders (searched recursively) or quoted glob patterns")
    gen.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="output folder (the input tree is mirrored under it), or a .wav/.flac/.ogg file for a single input")
    gen.add_argument("--task", required=True, choices=TASKS, help="what to generate")
    gen.add_argument("--model", required=True, metavar="DIR", help="token-LM folder (a training run's export/)")
    gen.add_argument("--ref", metavar="REF", help="tse: an enrollment clip of the voice to keep; vc: a clip of the voice to speak in")
    gen.add_argument("--query", metavar="TEXT", help="lass: the source to keep, e.g. 'keep the speech', 'keep the mains hum'")
    gen.add_argument("--n-frames", type=_frames, default=None, metavar="auto|N",
                     help="codec frames to generate (default auto: as many as the input has)")
    gen.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    gen.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens only (default 0: all)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1: off)")
    gen.add_argument("--greedy", action="store_true", help="take the most likely token (no sampling)")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every input (default 0)")
    gen.add_argument("--force", action="store_true", help="overwrite existing outputs")
    gen.add_argument("--device", default="cpu", help="torch device, or 'auto' (default cpu)")
    gen.set_defaults(func=cmd_generate)
