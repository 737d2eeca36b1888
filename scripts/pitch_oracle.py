#!/usr/bin/env python3
"""What the pitch stream can give, before any training: the harmonic-plus-noise synthesiser
(``hasrd.pitch.synth``) driven by the original's own pitch and envelope.

    python scripts/pitch_oracle.py --data data/real/manifest_val.jsonl --limit 40
    python scripts/pitch_oracle.py --data data/corpus/manifest_val.jsonl --bands 16,32,48 --f0-bits 5,7,0 --hops 320,640

For each utterance (16 kHz) the tracker gives F0 and voicing at the codec's frames; the
synthesiser's band analysis gives the original's power per band and frame (the envelope); the
synthesiser renders them back. Variants, one row each: the number of envelope bands (``--bands``),
the F0 quantised to ``B`` bits on a log scale over 60-450 Hz (0: unquantised), the frame hop of
the envelope and pitch (``--hops``: 320 = 50 Hz, 640 = 25 Hz), and the tracker (``--trackers``:
``hasrd`` is :func:`hasrd.pitch.track.track`, ``pyin`` librosa's pYIN). Voiced frames put the
band's power in the harmonic part below ``--mvf`` Hz and share it above (``--share``); unvoiced
frames put it all in the noise. Each row: means of PESQ-wb and STOI against the original (the
output is sample-aligned). Held-out training-side data only: the evaluation set is for the
evaluation (docs/data.md).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 16000
F0_LO, F0_HI = 60.0, 450.0


def quantise_f0(f0: np.ndarray, bits: int) -> np.ndarray:
    """F0 on ``2**bits`` log-spaced levels over 60-450 Hz (0 bits: unchanged)."""
    if not bits:
        return f0
    levels = 2 ** bits
    pos = np.log(np.clip(f0, F0_LO, F0_HI) / F0_LO) / math.log(F0_HI / F0_LO) * (levels - 1)
    return F0_LO * np.exp(np.round(pos) / (levels - 1) * math.log(F0_HI / F0_LO))


def pyin_track(audio: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    frames = -(-len(audio) // hop)
    f0, voiced, _ = librosa.pyin(audio, fmin=50, fmax=500, sr=SR, frame_length=1024, hop_length=hop, center=True)
    # librosa's frame f is centred on f * hop; the codec's on f * hop + hop / 2: average neighbours
    f0 = np.where(np.isnan(f0), 0.0, f0)
    f0 = np.concatenate([f0, f0[-1:]])[: frames + 1]
    v = np.concatenate([voiced, voiced[-1:]])[: frames + 1].astype(float)
    f0 = 0.5 * (f0[:-1] + f0[1:])[:frames]
    v = (0.5 * (v[:-1] + v[1:]) >= 0.5)[:frames]
    f0 = np.pad(f0, (0, frames - len(f0)), mode="edge")
    v = np.pad(v, (0, frames - len(v)), mode="edge")
    good = f0 > 0
    if good.any():
        f0 = np.interp(np.arange(frames), np.flatnonzero(good), f0[good])
    else:
        f0 = np.full(frames, 120.0)
    return f0, v.astype(float)


def hasrd_track(audio: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    from hasrd.pitch.track import track

    f0, v = track(audio, SR, hop)
    return np.asarray(f0, float), (np.asarray(v, float) >= 0.5).astype(float)


TRACKERS = {"hasrd": hasrd_track, "pyin": pyin_track}


def envelope(audio: np.ndarray, f0: np.ndarray, bands: int, hop: int, n_fft: int = 512) -> np.ndarray:
    """The original's band power per frame ``[F, bands]`` (the synthesiser's pitch-adaptive analysis)."""
    from hasrd.pitch.synth import HarmonicNoiseSynth

    synth = HarmonicNoiseSynth(SR, hop, bands, n_fft=n_fft)
    x = torch.from_numpy(audio[None].astype(np.float32))
    return synth.analyse(x, torch.from_numpy(f0).float()[None])[0].numpy()


def render(audio: np.ndarray, f0: np.ndarray, voiced: np.ndarray, bands: int, hop: int, mvf: float,
           share: float, n_fft: int = 1024, env: np.ndarray | None = None) -> np.ndarray:
    """The synthesiser driven by ``f0``, ``voiced`` and the envelope ``env [F, bands]`` (band power;
    the original's own when None)."""
    from hasrd.pitch.synth import HarmonicNoiseSynth, band_edges

    synth = HarmonicNoiseSynth(SR, hop, bands, n_fft=n_fft)
    if env is None:
        env = envelope(audio, f0, bands, hop, n_fft)
    env = torch.from_numpy(np.asarray(env, np.float32))[None]  # [1, F, N]
    Fr = env.shape[1]
    edges = band_edges(SR, bands)
    centres = torch.from_numpy(0.5 * (edges[:-1] + edges[1:])).float()
    harmonic_share = torch.where(centres < mvf, torch.ones_like(centres), torch.full_like(centres, share))
    v = torch.from_numpy(voiced[:Fr]).float()[None, :, None]
    h = env * v * harmonic_share
    n = env - h
    y = synth(torch.from_numpy(f0[:Fr]).float()[None], h, n)[0, 0, : len(audio)]
    return y.numpy()


FLOOR_DB = 60.0  #: log envelopes are floored this far below the utterance's loudest band


def log_envelope(env: np.ndarray) -> np.ndarray:
    """Band power ``[F, N]`` -> natural-log power, floored :data:`FLOOR_DB` below the utterance's peak."""
    lg = np.log(np.maximum(env, 1e-10))
    return np.maximum(lg, lg.max() - FLOOR_DB / 10 * math.log(10))


def train_envelope_vq(features: np.ndarray, stages: int, size: int, iters: int = 20, seed: int = 0) -> list[torch.Tensor]:
    """A multi-stage (residual) codebook of log envelopes ``[M, N]``: each stage k-means
    (``vector_quantize_pytorch``'s) on what the previous stages left."""
    from vector_quantize_pytorch.vector_quantize_pytorch import kmeans

    torch.manual_seed(seed)
    x = torch.from_numpy(features.astype(np.float32))
    books = []
    for _ in range(stages):
        means, _ = kmeans(x[None], size, num_iters=iters)
        book = means[0]
        books.append(book)
        x = x - book[torch.cdist(x, book).argmin(-1)]
    return books


def quantise_envelope(lg: np.ndarray, books: list[torch.Tensor]) -> np.ndarray:
    """Log envelope ``[F, N]`` through the stages of ``books`` -> band power ``[F, N]``."""
    x = torch.from_numpy(lg.astype(np.float32))
    out = torch.zeros_like(x)
    for book in books:
        q = book[torch.cdist(x - out, book).argmin(-1)]
        out = out + q
    return np.exp(out.numpy())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, help="a JSONL manifest of held-out training-side audio (repeatable)")
    p.add_argument("--limit", type=int, default=40, help="utterances per manifest, spread evenly")
    p.add_argument("--bands", default="32", help="comma-separated envelope band counts")
    p.add_argument("--f0-bits", default="7", help="comma-separated F0 bit depths (0: unquantised)")
    p.add_argument("--hops", default="320", help="comma-separated frame hops (samples at 16 kHz)")
    p.add_argument("--trackers", default="hasrd", help="comma-separated: hasrd, pyin")
    p.add_argument("--mvf", type=float, default=4000.0, help="voiced frames: harmonic below this frequency (Hz)")
    p.add_argument("--share", type=float, default=0.5, help="voiced frames: harmonic share of the power above --mvf")
    p.add_argument("--n-fft", type=int, default=1024, help="the synthesiser's STFT size")
    p.add_argument("--vq-stages", default="0", help="comma-separated stage counts of a multi-stage envelope "
                   "codebook (0: the original's envelope, unquantised)")
    p.add_argument("--vq-train", action="append", default=[], help="training-side manifest the envelope codebook "
                   "is trained on (repeatable; needed with --vq-stages above 0)")
    p.add_argument("--vq-limit", type=int, default=400, help="utterances per --vq-train manifest, spread evenly")
    p.add_argument("--vq-size", type=int, default=1024, help="entries per envelope codebook stage")
    p.add_argument("--vq-iters", type=int, default=20, help="k-means iterations per stage")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    from hasrd.eval.metrics import pesq_scores, stoi_scores
    from hasrd.io.audio import load_audio
    from hasrd.io.manifest import read_rows, spread

    clips = []
    for manifest in args.data:
        rows = spread(read_rows(manifest, ("path",)), args.limit)
        clips += [load_audio(r["path"], SR)[0][0] for r in rows]
    stage_counts = [int(v) for v in args.vq_stages.split(",")]
    if max(stage_counts) and not args.vq_train:
        p.error("--vq-stages above 0 needs --vq-train (training-side manifests for the envelope codebook)")
    train_clips = []
    for manifest in args.vq_train:
        rows = spread(read_rows(manifest, ("path",)), args.vq_limit)
        train_clips += [load_audio(r["path"], SR)[0][0] for r in rows]
    grid = [(tr, h, b, q, k) for tr in args.trackers.split(",") for h in map(int, args.hops.split(","))
            for b in map(int, args.bands.split(",")) for q in map(int, args.f0_bits.split(",")) for k in stage_counts]
    rows = []
    tracks: dict = {}
    codebooks: dict = {}
    for tracker, hop, bands, bits, stages in grid:
        books = None
        if stages:
            if (tracker, hop, bands) not in codebooks:
                t0 = time.perf_counter()
                feats = np.concatenate([log_envelope(envelope(a, TRACKERS[tracker](a, hop)[0], bands, hop, args.n_fft))
                                        for a in train_clips])
                codebooks[(tracker, hop, bands)] = train_envelope_vq(feats, max(stage_counts), args.vq_size, args.vq_iters)
                print(f"envelope codebook ({tracker}, hop {hop}, {bands} bands): {len(feats)} frames, "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
            books = codebooks[(tracker, hop, bands)][:stages]
        pesqs, stois = [], []
        for i, audio in enumerate(clips):
            if (tracker, hop, i) not in tracks:
                tracks[(tracker, hop, i)] = TRACKERS[tracker](audio, hop)
            f0, voiced = tracks[(tracker, hop, i)]
            env = None
            if books is not None:
                env = quantise_envelope(log_envelope(envelope(audio, f0, bands, hop, args.n_fft)), books)
            y = render(audio, quantise_f0(f0, bits), voiced, bands, hop, args.mvf, args.share, args.n_fft, env)
            pesqs.append(pesq_scores(audio, y, SR)["pesq_wb"])
            stois.append(stoi_scores(audio, y, SR)["stoi"])
        env_bits = stages * math.log2(args.vq_size)
        row = {"tracker": tracker, "hop": hop, "bands": bands, "f0_bits": bits, "vq_stages": stages,
               "envelope_bit_s": env_bits * SR / hop if stages else None, "n": len(clips),
               "pesq_wb": float(np.nanmean(pesqs)), "stoi": float(np.mean(stois))}
        rows.append(row)
        print(f"{tracker} hop {hop} bands {bands} f0 bits {bits} vq stages {stages}: PESQ-wb {row['pesq_wb']:.2f} "
              f"STOI {row['stoi']:.3f}", file=sys.stderr)
    print(f"\n{len(clips)} utterances from {', '.join(args.data)}; voiced: harmonic below {args.mvf:g} Hz, "
          f"{args.share:g} of the power above\n")
    print("| tracker | frame hop | envelope bands | F0 bits | envelope | PESQ-wb | STOI |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in rows:
        env = f"{r['vq_stages']} x {args.vq_size} ({r['envelope_bit_s']:g} bit/s)" if r["vq_stages"] else "original"
        print(f"| {r['tracker']} | {r['hop']} | {r['bands']} | {r['f0_bits'] or 'exact'} | {env} | {r['pesq_wb']:.2f} "
              f"| {r['stoi']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
