"""``hasrd enhance``: noisy speech -> enhanced speech with an enhancer trained by train.py
(``hasrd.enhance``), same length, channels and sample rate as the input."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, JobError
from hasrd.cli.jobs import AUDIO_OUT_FORMATS, Job, make_parent, my_jobs, output_is_file, resolve_jobs, run_jobs
from hasrd.cli.loading import load_checked, resolve_device
from hasrd.dist import distributed, summary


def _load_enhancer(spec: str, device: str):
    from hasrd.enhance import load_enhancer

    return load_checked(load_enhancer, spec, device, "enhancer")


def _enhance_file(enh, src: Path, out: Path) -> None:
    """Enhance every channel of ``src`` and write ``out`` at the input's sample rate (atomically)."""
    import torch

    from hasrd.io.audio import load_audio, resample, save_audio

    audio, sr = load_audio(src, mono=False)
    if audio.shape[-1] == 0:
        raise JobError("empty audio")
    x = resample(audio, sr, enh.sample_rate) if sr != enh.sample_rate else audio
    device = next(enh.parameters()).device
    y = enh.enhance(torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1).to(device))[:, 0].cpu().numpy()
    y = resample(y, enh.sample_rate, sr)[:, : audio.shape[-1]]
    if y.shape[-1] < audio.shape[-1]:
        y = np.pad(y, ((0, 0), (0, audio.shape[-1] - y.shape[-1])))
    save_audio(out, y, sr, subtype=AUDIO_OUT_FORMATS.get(out.suffix.lower(), AUDIO_OUT_FORMATS[".wav"])[1])


def cmd_enhance(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.audio import AUDIO_EXTENSIONS, find_audio_files

    out_root = Path(args.output)
    out_is_file = output_is_file(args.inputs, out_root, AUDIO_OUT_FORMATS)
    dist = distributed(args.device)
    if dist.world > 1:
        torch.set_num_threads(1)
    enh = _load_enhancer(args.model, resolve_device(args.device, dist))
    jobs = resolve_jobs(args.inputs, out_root, out_is_file, find_audio_files,
                        lambda p: p.suffix.lower() in AUDIO_EXTENSIONS, ".wav")
    started = my_jobs(jobs, dist, out_root, out_is_file, "enhance")
    if started is None:
        return EXIT_FAILED
    mine, report = started

    def work(job: Job) -> bool:
        if job.out.exists() and not args.force:
            if job.resumable:  # a folder run that was interrupted: keep what is done
                return False
            raise JobError(f"output {job.out} exists (use --force to overwrite it)")
        if Path(os.path.abspath(job.out)) == Path(os.path.abspath(job.src)):
            raise JobError("the output would overwrite the input")
        make_parent(job.out)
        _enhance_file(enh, job.src, job.out)
        return True

    done, skipped = run_jobs(mine, report, work)
    summary("enhanced", done, skipped, report.failed, dist)
    return EXIT_FAILED if report.failed else EXIT_OK


def add_parser(sub) -> None:
    enh = sub.add_parser("enhance", help="noisy speech -> enhanced speech, in a codec's latent space",
                         description="Enhance noisy speech with an enhancer trained by train.py (task: enhance): "
                         "the codec encodes the noisy audio, a Conformer maps its latent or tokens to clean ones, "
                         "the codec decodes them. Output: same length, channels and sample rate as the input (docs/enhancement.md).")
    enh.add_argument("inputs", nargs="+", metavar="IN", help="audio files, folders (searched recursively) or quoted glob patterns")
    enh.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="output folder (the input tree is mirrored under it), or a .wav/.flac/.ogg file for a single input")
    enh.add_argument("--model", required=True, metavar="DIR", help="enhancer folder (a training run's export/)")
    enh.add_argument("--force", action="store_true", help="overwrite existing outputs")
    enh.add_argument("--device", default="cpu", help="torch device, or 'auto' (default cpu)")
    enh.set_defaults(func=cmd_enhance)
