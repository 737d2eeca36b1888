#!/usr/bin/env python
"""Token-LM generation speed on the CPU, with and without the KV cache (see docs/lm.md).

For one LM (a trained folder, ``--lm DIR``, or a config's model with random weights,
``--config``: speed does not depend on what was learned) and one speech-like clip of ``--seconds``:

* LM steps per second and output frames per second of :meth:`TokenLM.generate`, greedy, on the
  clip's codec features, with the KV cache and without it (the whole sequence re-run each step),
  for one window of ``--frames`` frames (default: the LM's training crop); the median of
  ``--repeats`` runs after one warm-up;
* the real-time factor (processing time / audio duration) of the whole ``se`` path, codec
  analysis + generation in windows (with the cache) + decoding, on the full clip;
* whether the cached and uncached codes are identical (they must be);
* the layout's cost: the same window in the delay layout (``F + K - 1`` steps of ``K`` tokens)
  against a flattened layout (``K * F`` steps of one token: the same backbone with one codebook
  head, random weights), both with the cache.

    python benchmarks/lm_speed.py --config codec_configs/lm/lm_cpu_25hz.yaml
    python benchmarks/lm_speed.py --lm runs/lm25/export --threads 2 --json out/lm_speed.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def random_lm(config: str):
    """The config's LM with random weights on its codec (every task of the recipe)."""
    from hasrd.codecs import load_codec
    from hasrd.config import load_config
    from hasrd.lm.codec_lm import CodecLM, LMNetwork, codec_spec, lm_view
    from hasrd.lm.tasks import TASKS, model_tasks
    from hasrd.lm.train import DEFAULT_LM, FILLED

    cfg = load_config(config)
    e = {**DEFAULT_LM, **(cfg.get("lm") or {})}
    codec = load_codec(e["codec"])
    D = lm_view(codec).latent_dim
    m = {k: v for k, v in (cfg.get("model") or {}).items() if k not in (*FILLED, "name", "sample_rate")}
    net = LMNetwork({**m, "n_codebooks": int(e["n_q"]), "codebook_size": int(codec.codebook_sizes[0]), "cond_dim": D,
                     "ref_dim": D, "text_dim": int(e["text_dim"]), "tasks": model_tasks(list(TASKS))})
    settings = {"codec": codec_spec(e["codec"]), "n_q": int(e["n_q"]), "ref_frames": int(e["ref_frames"]),
                "chunk_frames": int(e["crop_frames"])}
    return CodecLM(codec, net.eval(), settings)


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lm", metavar="DIR", help="a token-LM folder (an export of task: lm)")
    src.add_argument("--config", metavar="YAML", help="a task: lm config: its model with random weights")
    p.add_argument("--seconds", type=float, default=8.0, help="clip length for the real-time factor (default 8)")
    p.add_argument("--frames", type=int, default=None, help="frames of the cached/uncached comparison (default: the training crop)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median; default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)

    import torch
    from speed import speech_like  # benchmarks/speed.py: the same test signal as the codec benchmark

    from hasrd.enhance.features import level_gain
    from hasrd.lm import load_codec_lm

    torch.set_num_threads(args.threads)
    lm = load_codec_lm(args.lm) if args.lm else random_lm(args.config)
    codec, net = lm.codec, lm.network
    wav = speech_like(args.seconds, codec.sample_rate)
    with torch.inference_mode():
        cond = lm.view.analyse(wav * level_gain(wav))[0].transpose(1, 2)
    frames = int(args.frames or lm.settings.get("chunk_frames") or cond.shape[1])
    window = cond[:, :frames]
    tl = net.lm
    kw = {"ref": cond.new_zeros(1, 1, tl.ref_dim), "ref_mask": torch.zeros(1, 1, dtype=torch.bool)} if tl.ref_dim else {}
    if tl.text_dim:
        kw["text"] = torch.zeros(1, tl.text_dim)
    steps = frames + tl.K - 1
    figures: dict = {"lm": args.lm or f"{args.config} (random weights)", "codec": str(lm.settings["codec"]),
                     "n_q": tl.K, "frame_rate_hz": codec.sample_rate / codec.hop_length, "frames": frames,
                     "steps": steps, "threads": args.threads,
                     "parameters_m": round(sum(q.numel() for q in net.parameters()) / 1e6, 2)}
    results = {}
    for cache in (True, False):
        with torch.inference_mode():
            sec, codes = timed(lambda: net.generate(["se"], window, frames, greedy=True, use_cache=cache, **kw), args.repeats)
        results[cache] = codes
        name = "cached" if cache else "uncached"
        figures[f"{name}_seconds"] = round(sec, 4)
        figures[f"{name}_steps_per_s"] = round(steps / sec, 1)
        figures[f"{name}_frames_per_s"] = round(frames / sec, 1)
    figures["cache_speedup"] = round(figures["uncached_seconds"] / figures["cached_seconds"], 2)
    figures["cached_equals_uncached"] = bool(torch.equal(results[True], results[False]))
    from hasrd.lm.model import TokenLM

    torch.manual_seed(0)
    flat = TokenLM({**tl.config, "n_codebooks": 1, "max_positions": tl.max_positions + frames * tl.K}).eval()
    with torch.inference_mode():
        sec, _ = timed(lambda: flat.generate(["se"], window, frames * tl.K, greedy=True, **kw), args.repeats)
    figures["flattened_steps"] = frames * tl.K
    figures["flattened_seconds"] = round(sec, 4)
    figures["flattened_frames_per_s"] = round(frames / sec, 1)
    sec, _ = timed(lambda: lm.generate("se", wav, greedy=True), args.repeats)
    figures["se_seconds_audio"] = args.seconds
    figures["se_rtf"] = round(sec / args.seconds, 4)

    print(f"token LM: {figures['lm']}; codec {figures['codec']} at {figures['frame_rate_hz']:g} Hz, n_q {tl.K}, "
          f"{figures['parameters_m']} M parameters, {args.threads} thread(s)")
    print(f"| generation of {frames} frames ({steps} steps) | seconds | steps/s | frames/s |")
    print("| --- | ---: | ---: | ---: |")
    for name in ("cached", "uncached"):
        print(f"| {'with' if name == 'cached' else 'without'} KV cache | {figures[f'{name}_seconds']:.3f} | "
              f"{figures[f'{name}_steps_per_s']:.1f} | {figures[f'{name}_frames_per_s']:.1f} |")
    print(f"| flattened layout, {figures['flattened_steps']} steps of 1 token, with KV cache | "
          f"{figures['flattened_seconds']:.3f} | {figures['flattened_steps'] / figures['flattened_seconds']:.1f} | "
          f"{figures['flattened_frames_per_s']:.1f} |")
    print(f"KV cache speed-up {figures['cache_speedup']:.2f}x; cached codes equal uncached: {figures['cached_equals_uncached']}; "
          f"the delay layout is {figures['flattened_seconds'] / figures['cached_seconds']:.2f}x faster than flattened")
    print(f"se on {args.seconds:g} s (analysis + generation in windows + decoding): RTF {figures['se_rtf']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["cached_equals_uncached"] else 1


if __name__ == "__main__":
    sys.exit(main())
