"""``hasrd decode``: ``.hsrd`` token files (``.hsrl`` latent files for a continuous model) -> audio
at the original length, chunk by chunk."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, JobError, UsageError
from hasrd.cli.jobs import (
    AUDIO_OUT_FORMATS,
    LATENT_SUFFIX,
    TOKEN_SUFFIX,
    Job,
    make_parent,
    my_jobs,
    output_is_file,
    resolve_jobs,
    run_jobs,
)
from hasrd.cli.loading import MODEL_HELP, load_model, model_dir, resolve_device
from hasrd.coding import DEFAULT_CHUNK_SECONDS, frames_per_chunk
from hasrd.dist import distributed, summary


def _check_model(codec, meta: dict, ignore_mismatch: bool) -> None:
    name, fp = codec.codec_name, codec.fingerprint()
    if (meta["codec"] != name or meta["fingerprint"] != fp) and not ignore_mismatch:
        from hasrd.io.modelindex import builtin_name

        theirs, ours = builtin_name(meta["codec"], meta["fingerprint"]), builtin_name(name, fp)
        made_by = f"the built-in model {theirs}" if theirs else "another model"
        this = f"the built-in model {ours}" if ours else "this one"
        fix = f"pass --model {theirs}" if theirs else "pass that model with --model"
        raise JobError(
            f"made by {made_by} ({meta['codec']} {meta['fingerprint']}), not by {this} ({name} {fp}); "
            f"{fix}, or --ignore-model-mismatch to decode anyway"
        )
    if codec.continuous:  # a latent file (_load_codes refused the other kind); a forced decode needs its shape
        if meta["latent_dim"] != codec.latent_dim:
            raise JobError(f"holds a latent of {meta['latent_dim']} channels, the model's has {codec.latent_dim}")
        if meta["sample_rate"] != codec.sample_rate or abs(meta["frame_rate"] - codec.frame_rate) > 1e-6:
            raise JobError(
                f"a latent at {meta['frame_rate']:g} frames/s of {meta['sample_rate']} Hz audio cannot be decoded by a "
                f"model at {codec.frame_rate:g} frames/s of {codec.sample_rate} Hz"
            )
        return
    # even a forced decode needs codes this model can read
    if meta["n_q"] > codec.num_codebooks:
        raise JobError(f"has {meta['n_q']} codebooks, the model only {codec.num_codebooks}")
    for i, (k_file, k_model) in enumerate(zip(meta["codebook_sizes"], codec.codebook_sizes)):
        if k_file != k_model:  # codes of another layout index other entries: noise, even when they fit
            raise JobError(f"codebook {i} has {k_file} entries, the model's has {k_model}")
    if meta["sample_rate"] != codec.sample_rate or abs(meta["frame_rate"] - codec.frame_rate) > 1e-6:
        raise JobError(
            f"codes at {meta['frame_rate']:g} frames/s of {meta['sample_rate']} Hz audio cannot be decoded by a model "
            f"at {codec.frame_rate:g} frames/s of {codec.sample_rate} Hz"
        )


def _load_codes(codec, path: Path, tables: Any = None) -> tuple[np.ndarray, dict]:
    """The token codes or the latent of ``path``, whichever kind the model decodes (the kind is
    read from the file's first bytes, else its suffix); a file of the other kind is refused."""
    from hasrd.io.latentfile import file_kind, load_latent
    from hasrd.io.tokenfile import load_tokens

    kind = file_kind(path)
    if kind == "latent" and not codec.continuous:
        raise JobError(f"is a .hsrl latent file (continuous codec); this model ({codec.codec_name} "
                       f"{codec.fingerprint()}) decodes .hsrd token files; pass the continuous model with --model")
    if kind == "tokens" and codec.continuous:
        raise JobError(f"is a .hsrd token file; this model ({codec.codec_name} {codec.fingerprint()}) is a "
                       "continuous codec that decodes .hsrl latent files; pass the token model with --model")
    return load_latent(path) if kind == "latent" else load_tokens(path, tables)


def _target_length(meta: dict, out_sr: int) -> int:
    if out_sr == meta["orig_sample_rate"]:
        return meta["length"]
    return int(round(meta["length"] * out_sr / meta["orig_sample_rate"]))


def _decode_to_file(codec, codes: np.ndarray, meta: dict, out: Path, out_sr: int, chunk_frames: int) -> int:
    """Decode chunk by chunk straight into ``out`` (via a temp file); returns samples written."""
    import soundfile as sf
    import soxr
    import torch

    from hasrd.io.atomic import temp_path

    fmt, subtype = AUDIO_OUT_FORMATS.get(out.suffix.lower(), AUDIO_OUT_FORMATS[".wav"])
    target = _target_length(meta, out_sr)
    frames = codes.shape[1]
    hop = codec.hop_length
    device = next(codec.parameters()).device if any(True for _ in codec.parameters()) else "cpu"
    stream = None if out_sr == codec.sample_rate else soxr.ResampleStream(
        codec.sample_rate, out_sr, 1, dtype="float32", quality="HQ"
    )
    written = 0
    with temp_path(out) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=out_sr, channels=1, format=fmt, subtype=subtype) as fh:
            for start in range(0, frames, chunk_frames):
                block = torch.from_numpy(codes[:, start:start + chunk_frames]).unsqueeze(0).to(device)
                wav = codec.decode_latent(block.float()) if codec.continuous else codec.decode(block)
                if tuple(wav.shape) != (1, 1, block.shape[-1] * hop):
                    raise RuntimeError(f"the codec decoded {tuple(wav.shape)} samples for {block.shape[-1]} frames")
                y = wav[0, 0].to("cpu", torch.float32).numpy()
                if stream is not None:
                    y = stream.resample_chunk(y, last=start + chunk_frames >= frames)
                y = y[: max(0, target - written)]
                if y.size:
                    fh.write(np.clip(y, -1.0, 1.0))
                    written += y.size
            if written < target:  # the last frame never falls short by more than rounding
                fh.write(np.zeros(target - written, dtype=np.float32))
                written = target
    return written


def _model_for(src: Path, spec: str | None, codec, models: dict, device: str) -> tuple[Any, str | None]:
    """The model that decodes ``src`` and its ``--model`` spec: ``--model`` when given; without it,
    the built-in model whose codec name and fingerprint the token file records (found in the
    built-in index, hasrd.io.modelindex, without loading any model; loaded once into ``models``),
    else ``codec`` (the default, whose mismatch is then reported)."""
    if spec is not None or src.suffix != TOKEN_SUFFIX:
        return codec, spec
    from hasrd.io.modelindex import builtin_name
    from hasrd.io.tokenfile import read_header

    try:
        meta = read_header(src)
    except (OSError, ValueError):
        return codec, None  # _load_codes reports the bad file in one line
    if (meta["codec"], meta["fingerprint"]) == (codec.codec_name, codec.fingerprint()):
        return codec, None
    name = builtin_name(meta["codec"], meta["fingerprint"])
    if name is not None and name not in models:
        models[name] = load_model(name, device)
    return models.get(name, codec), name


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    from hasrd.io.audio import audio_info
    from hasrd.io.tokenfile import MAX_SAMPLE_RATE

    if args.sample_rate is not None and not 1 <= args.sample_rate <= MAX_SAMPLE_RATE:
        raise UsageError(f"--sample-rate {args.sample_rate}: must be in 1..{MAX_SAMPLE_RATE}")
    if not args.chunk_seconds > 0 or args.chunk_seconds == float("inf"):
        raise UsageError(f"--chunk-seconds {args.chunk_seconds:g}: must be a positive number of seconds")
    if args.pitch_shift is not None and not -24.0 <= args.pitch_shift <= 24.0:
        raise UsageError(f"--pitch-shift {args.pitch_shift:g}: must be a number of semitones in -24..24")
    out_root = Path(args.output)
    out_is_file = output_is_file(args.inputs, out_root, AUDIO_OUT_FORMATS)
    dist = distributed(args.device)
    if dist.world > 1:
        torch.set_num_threads(1)
    device = resolve_device(args.device, dist)
    codec = load_model(args.model, device)
    models = {args.model: codec}  # --model, or each built-in model that made a file (loaded once)
    if args.pitch_shift is not None and args.model is not None and not hasattr(codec, "shift_pitch"):
        raise UsageError(f"--pitch-shift needs a model with a pitch stream (a pitch codec); "
                         f"{codec.codec_name} has none")
    suffix = LATENT_SUFFIX if codec.continuous else TOKEN_SUFFIX  # what folders and globs pick up

    def find(root: Path) -> list[Path]:
        return sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())

    jobs = resolve_jobs(args.inputs, out_root, out_is_file, find, lambda p: p.suffix == suffix, ".wav")
    started = my_jobs(jobs, dist, out_root, out_is_file, "decode")
    if started is None:
        return EXIT_FAILED
    mine, report = started

    def work(job: Job) -> bool:
        model, spec = _model_for(job.src, args.model, codec, models, device)
        codes, meta = _load_codes(model, job.src, model_dir(spec))  # entropy.json, if used
        _check_model(model, meta, args.ignore_model_mismatch)
        if args.pitch_shift:
            if not hasattr(model, "shift_pitch"):
                raise JobError(f"--pitch-shift needs a model with a pitch stream; {model.codec_name} has none")
            if codes.shape[0] < 2:
                raise JobError("holds no pitch stream (encoded with --n-q 1): --pitch-shift cannot move it")
            codes = model.shift_pitch(torch.from_numpy(codes)[None], args.pitch_shift)[0].numpy()
        out_sr = args.sample_rate or meta["orig_sample_rate"]
        out = job.out
        if out.exists() and not args.force:
            if not job.resumable:
                raise JobError(f"output {out} exists (use --force to overwrite it)")
            try:
                have = audio_info(out)
            except ValueError:
                have = None  # a broken leftover: decode again
            if have is not None:
                if have["sample_rate"] == out_sr and have["frames"] == _target_length(meta, out_sr):
                    return False
                raise JobError(f"output {out} exists with another length or sample rate; use --force to overwrite it")
        make_parent(out)
        try:
            _decode_to_file(model, codes, meta, out, out_sr, meta.get("chunk_frames") or frames_per_chunk(model, args.chunk_seconds))
        except OSError as exc:
            raise JobError(f"cannot write {out}: {exc.strerror or exc}") from None
        return True

    done, skipped = run_jobs(mine, report, work)
    summary("decoded", done, skipped, report.failed, dist)
    return EXIT_FAILED if report.failed else EXIT_OK


def add_parser(sub) -> None:
    dec = sub.add_parser("decode", help=".hsrd token files or folders -> audio",
                         description="Decode .hsrd token files back to audio at the original length.")
    dec.add_argument("inputs", nargs="+", metavar="INPUT",
                     help=".hsrd token files (.hsrl latent files for a continuous model), folders (searched recursively) or quoted glob patterns")
    dec.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="output folder, or a .wav/.flac/.ogg file name for a single input")
    dec.add_argument("--model", default=None, metavar="DIR",
                     help=MODEL_HELP + "; without it, each token file is decoded by the built-in model it names")
    dec.add_argument("--sample-rate", type=int, default=None, metavar="SR",
                     help="output sample rate (default: the original file's)")
    dec.add_argument("--ignore-model-mismatch", action="store_true",
                     help="decode token files made by another model (fingerprint differs)")
    dec.add_argument("--force", action="store_true", help="overwrite existing outputs")
    dec.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS, metavar="S",
                     help="decode chunk for files that do not record the encoder's chunk")
    dec.add_argument("--device", default="cpu", help="torch device, or 'auto' (default cpu)")
    dec.add_argument("--pitch-shift", type=float, default=None, metavar="SEMITONES",
                     help="a pitch-stream model only: move the voice by this many semitones (-24..24) while "
                          "decoding (formants and timing kept; the codes are not encoded again)")
    dec.set_defaults(func=cmd_decode)
