#!/usr/bin/env python
"""CPU speed benchmark: hasrd codecs beside EnCodec and DAC (see docs/speed.md).

For each system, in a fresh subprocess (so that its peak memory is its own):

* real-time factor (processing time / audio duration) of ``encode`` and of ``decode``, each the
  median of ``--repeats`` timed runs after one warm-up run, on one clip of ``--seconds`` seconds;
* peak resident memory (``getrusage`` max RSS of the subprocess) after the single-clip runs and
  after the batched runs;
* batched throughput: seconds of audio encoded and decoded per second of wall time for a batch
  of ``--batch`` different clips;
* for causal hasrd models, the real-time factor of streaming encode + decode, one frame per push.

Every system gets the same speech-like test signal, synthesised at its own sample rate. Models
other than the built-in ones (``default``, ``hcodec-25hz``) have random weights: speed does not depend on what was learned.
Weight norm is folded into plain weights first (``Codec.prepare_for_inference``; the same
folding for EnCodec and DAC), unless ``--no-fold``.

    python benchmarks/speed.py                          # everything, 2 threads, table on stdout
    python benchmarks/speed.py --systems default,encodec_1.5 --threads 1 --json out/speed.json
    python benchmarks/speed.py --quick                  # smoke run: tiny models, 1 s of audio
    python benchmarks/speed.py --list                   # the system names
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "codec_configs"
REFERENCE = "encodec_1.5"  # ratios are given relative to this system
BASELINES = {
    "encodec_1.5": "EnCodec 24 kHz at 1.5 kbps (random weights)",
    "encodec_6": "EnCodec 24 kHz at 6 kbps (random weights)",
    "dac_16khz": "DAC 16 kHz architecture, 12 codebooks, 6 kbps (random weights)",
}
QUICK_SYSTEMS = ["debug/hasrd_tiny", "debug/hasrd_tiny_causal", REFERENCE]


def config_systems() -> list[str]:
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml"))


def all_systems() -> list[str]:
    from hasrd.codecs import BUILTIN_MODELS

    return [*BUILTIN_MODELS, *config_systems(), *BASELINES]


# ---- the test signal ----------------------------------------------------------------------------
def speech_like(seconds: float, sample_rate: int, seed: int = 0):
    """``[1, 1, T]`` float32: voiced harmonic syllables (gliding pitch, 4 Hz envelope), short
    pauses and a little noise. Deterministic for a seed; the same signal at any sample rate."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    f0 = (100 + (20 * seed) % 60) * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t + seed))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    harmonics = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * np.exp(-0.35 * k) for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + seed), 0, None) ** 1.5
    pauses = (np.sin(2 * np.pi * 0.3 * t + seed) > -0.8).astype(float)
    x = harmonics * syllables * pauses
    x = 0.3 * x / (np.abs(x).max() + 1e-9) + 0.002 * rng.standard_normal(t.size)
    return torch.from_numpy(x.astype(np.float32)).view(1, 1, -1)


# ---- systems (built inside the worker) ---------------------------------------------------------
class System:
    """What the worker times: ``encode(wav[B,1,T]) -> codes`` and ``decode(codes) -> wav``."""

    def __init__(self, name, model, sample_rate, kbps, encode, decode, codec=None):
        self.name, self.model, self.sample_rate, self.kbps = name, model, sample_rate, kbps
        self.encode, self.decode, self.codec = encode, decode, codec


def _random_ssl(spec):
    """SSL encoder specs that name a hub id or folder -> the same architecture with random weights
    (the transformers default config, i.e. base size, unless the spec gives one)."""
    if isinstance(spec, dict):
        if spec.get("type") == "ssl" and spec.get("pretrained"):
            spec = dict(spec, pretrained=None, config=spec.get("config") or {})
        return {k: _random_ssl(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_random_ssl(v) for v in spec]
    return spec


def _initialise_codebooks(codec) -> None:
    """Codebooks waiting for their k-means initialisation refuse to encode: give them random
    entries instead (the benchmark needs the arithmetic, not the clusters)."""
    import torch

    with torch.no_grad():
        for m in codec.modules():
            initted = getattr(m, "initted", None)
            if torch.is_tensor(initted) and not bool(initted) and torch.is_tensor(getattr(m, "embed", None)):
                m.embed.normal_()
                initted.fill_(True)


def _hasrd_system(name: str, codec, fold: bool) -> System:
    from hasrd.codecs import TokenCodec

    codec = codec.prepare_for_inference() if fold else codec.eval()
    if not isinstance(codec, TokenCodec):  # a float latent instead of codes (16-bit values)
        return System(name, codec, codec.sample_rate, codec.latent_bitrate(16) / 1000,
                      codec.encode_to_latent, codec.decode_latent, codec=codec)
    n_q = codec.num_codebooks
    return System(name, codec, codec.sample_rate, codec.bitrate(n_q) / 1000,
                  lambda x: codec.encode(x, n_q), codec.decode, codec=codec)


def build_system(name: str, fold: bool) -> System:
    import torch

    from hasrd.nn import remove_weight_norm

    torch.manual_seed(0)
    from hasrd.codecs import builtin_model_dir, load_codec

    if builtin_model_dir(name) is not None:
        return _hasrd_system(name, load_codec(name), fold)  # a missing built-in: FileNotFoundError
    if name in config_systems():
        from hasrd.codecs import build_codec
        from hasrd.config import load_config

        codec = build_codec(_random_ssl(load_config(CONFIG_DIR / f"{name}.yaml")["model"]))
        _initialise_codebooks(codec)
        return _hasrd_system(name, codec, fold)
    if name.startswith("encodec_"):
        from encodec import EncodecModel

        model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
        bandwidth = float(name.split("_", 1)[1])
        model.set_target_bandwidth(bandwidth)
        if fold:
            remove_weight_norm(model)
        return System(name, model, model.sample_rate, bandwidth, model.encode, model.decode)
    if name == "dac_16khz":
        import dac

        # the architecture of DAC's released 16 kHz model: hop 320 (50 Hz), 12 codebooks of 1024
        model = dac.DAC(encoder_dim=64, encoder_rates=[2, 4, 5, 8], decoder_dim=1536, decoder_rates=[8, 5, 4, 2],
                        n_codebooks=12, codebook_size=1024, codebook_dim=8, sample_rate=16000).eval()
        if fold:
            remove_weight_norm(model)

        def encode(x):
            return model.encode(model.preprocess(x, model.sample_rate))[1]

        def decode(codes):
            return model.decode(model.quantizer.from_codes(codes)[0])

        return System(name, model, model.sample_rate, 12 * 10 * 50 / 1000, encode, decode)
    raise ValueError(f"unknown system {name!r}; known: {', '.join(all_systems())}")


# ---- the worker (one fresh process per system) ---------------------------------------------------
def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _stream_seconds(codec, x) -> float:
    """Wall time to stream ``x`` through a causal codec's encoder and decoder, one frame per push."""
    hop = codec.hop_length
    t0 = time.perf_counter()
    enc, dec = codec.stream_encoder(), codec.stream_decoder()
    for start in range(0, x.shape[-1], hop):
        dec.push(enc.push(x[..., start:start + hop]))
    dec.push(enc.flush())
    return time.perf_counter() - t0


def run_worker(name: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    # every worker imports the same libraries before its baseline, so that "peak - baseline" is
    # the memory of the model and its activations, comparable between systems
    import dac  # noqa: F401
    import encodec  # noqa: F401

    import hasrd.codecs  # noqa: F401
    rss_import = _max_rss_mb()
    try:
        system = build_system(name, fold=not args.no_fold)
    except FileNotFoundError as e:
        return {"system": name, "skipped": str(e)}
    params = sum(p.numel() for p in system.model.parameters())
    rss_build = _max_rss_mb()
    sr, seconds = system.sample_rate, args.seconds
    x = speech_like(seconds, sr)
    out = {"system": name, "description": BASELINES.get(name, "hasrd codec"), "sample_rate": sr,
           "kbps": round(system.kbps, 3), "parameters": params, "seconds": seconds}
    with torch.inference_mode():
        codes = system.encode(x)  # warm-up
        system.decode(codes)
        enc = _median_time(lambda: system.encode(x), args.repeats)
        dec = _median_time(lambda: system.decode(codes), args.repeats)
        out.update(encode_rtf=enc / seconds, decode_rtf=dec / seconds)
        if system.codec is not None and system.codec.causal:
            _stream_seconds(system.codec, x[..., : system.codec.hop_length * 4])  # warm-up
            out["stream_rtf"] = statistics.median(_stream_seconds(system.codec, x) for _ in range(args.repeats)) / seconds
        rss_single = _max_rss_mb()
        xb = torch.cat([speech_like(seconds, sr, seed=i) for i in range(args.batch)], dim=0)
        codes_b = system.encode(xb)
        system.decode(codes_b)  # warm-up at this batch size
        enc_b = _median_time(lambda: system.encode(xb), args.repeats)
        dec_b = _median_time(lambda: system.decode(codes_b), args.repeats)
    audio_b = args.batch * seconds
    out.update(
        batch=args.batch,
        batch_encode_x_realtime=audio_b / enc_b,
        batch_decode_x_realtime=audio_b / dec_b,
        batch_x_realtime=audio_b / (enc_b + dec_b),
        rss_base_mb=round(rss_import, 1), rss_build_mb=round(rss_build, 1),
        rss_peak_mb=round(rss_single, 1), rss_peak_batch_mb=round(_max_rss_mb(), 1),
    )
    return out


# ---- the driver ----------------------------------------------------------------------------------
def run_system(name: str, args) -> dict:
    # the checkout this script belongs to comes first, installed or not
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONWARNINGS="ignore", PYTHONPATH=path)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--threads", str(args.threads), "--seconds", str(args.seconds),
           "--repeats", str(args.repeats), "--batch", str(args.batch)]
    if args.no_fold:
        cmd.append("--no-fold")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"system": name, "failed": f"timed out after {args.timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"system": name, "failed": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[dict], args) -> None:
    ref = next((r for r in results if r["system"] == REFERENCE and "encode_rtf" in r), None)
    head = ["system", "kHz", "kbps", "params M", "enc RTF", "dec RTF", "enc/EnC1.5", "dec/EnC1.5",
            f"batch{args.batch} xRT", "stream RTF", "peak MB", "+model MB", f"+batch{args.batch} MB"]
    rows = []
    for r in results:
        if "encode_rtf" not in r:
            continue
        rows.append([
            r["system"], _fmt(r["sample_rate"] / 1000, "g"), _fmt(r["kbps"], "g"), _fmt(r["parameters"] / 1e6, ".2f"),
            _fmt(r["encode_rtf"], ".4f"), _fmt(r["decode_rtf"], ".4f"),
            _fmt(r["encode_rtf"] / ref["encode_rtf"] if ref else None, ".2f"),
            _fmt(r["decode_rtf"] / ref["decode_rtf"] if ref else None, ".2f"),
            _fmt(r["batch_x_realtime"], ".1f"), _fmt(r.get("stream_rtf"), ".4f"),
            _fmt(r["rss_peak_mb"], ".0f"), _fmt(r["rss_peak_mb"] - r["rss_base_mb"], ".0f"),
            _fmt(r["rss_peak_batch_mb"] - r["rss_base_mb"], ".0f"),
        ])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print(line(head))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    for r in results:
        if "skipped" in r:
            print(f"skipped {r['system']}: {r['skipped']}")
        if "failed" in r:
            print(f"FAILED {r['system']}: {r['failed']}")
    print(f"\nRTF = processing time / audio duration (lower is faster), median of {args.repeats} after a warm-up; "
          f"{args.seconds:g} s clips, {args.threads} thread(s); x/EnC1.5 = RTF ratio to {REFERENCE} "
          f"(< 1: faster); batch xRT = seconds of audio encoded + decoded per second, batch of {args.batch}; "
          "stream RTF = causal models streamed one frame per push; peak MB = max RSS of the process "
          "(single clip); +model MB / +batch MB = peak above the process's RSS once torch, hasrd, "
          "encodec and dac are imported (single clip / batch).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", help="comma-separated names (see --list); default all, or a small set with --quick")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--seconds", type=float, help="clip length (default 10; --quick: 1)")
    p.add_argument("--repeats", type=int, help="timed runs per measure, median reported (default 5; --quick: 1)")
    p.add_argument("--batch", type=int, help="clips in the batched throughput run (default 4; --quick: 2)")
    p.add_argument("--json", metavar="OUT", help="also save the results as JSON")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 1 s clips, 1 repeat, batch 2; systems {','.join(QUICK_SYSTEMS)} unless --systems")
    p.add_argument("--no-fold", action="store_true", help="keep weight norm (time the training-form models)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed per system")
    p.add_argument("--list", action="store_true", help="print the system names and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, full, quick in (("seconds", 10.0, 1.0), ("repeats", 5, 1), ("batch", 4, 2)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    if args.worker:
        print(json.dumps(run_worker(args.worker, args)))
        return 0
    if args.list:
        print("\n".join(all_systems()))
        return 0
    names = args.systems.split(",") if args.systems else (QUICK_SYSTEMS if args.quick else all_systems())
    unknown = [n for n in names if n not in all_systems()]
    if unknown:
        p.error(f"unknown system(s) {unknown}; known: {', '.join(all_systems())}")

    results = []
    for name in names:
        print(f"[speed] {name} ...", file=sys.stderr, flush=True)
        results.append(run_system(name, args))
    print_table(results, args)
    if args.json:
        payload = {
            "settings": {k: getattr(args, k) for k in ("threads", "seconds", "repeats", "batch", "no_fold", "quick")},
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "torch": __import__("torch").__version__},
            "reference": REFERENCE,
            "results": results,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
