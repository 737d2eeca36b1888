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


def render(audio: np.ndarray, f0: np.ndarray, voiced: np.ndarray, bands: int, hop: int, mvf: float,
           share: float, n_fft: int = 1024) -> np.ndarray:
    from hasrd.pitch.synth import HarmonicNoiseSynth, band_edges

    synth = HarmonicNoiseSynth(SR, hop, bands, n_fft=n_fft)
    x = torch.from_numpy(audio[None].astype(np.float32))
    env = synth.analyse(x, torch.from_numpy(f0).float()[None])  # [1, F, N]
    Fr = env.shape[1]
    edges = band_edges(SR, bands)
    centres = torch.from_numpy(0.5 * (edges[:-1] + edges[1:])).float()
    harmonic_share = torch.where(centres < mvf, torch.ones_like(centres), torch.full_like(centres, share))
    v = torch.from_numpy(voiced[:Fr]).float()[None, :, None]
    h = env * v * harmonic_share
    n = env - h
    y = synth(torch.from_numpy(f0[:Fr]).float()[None], h, n)[0, 0, : len(audio)]
    return y.numpy()


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
    grid = [(tr, h, b, q) for tr in args.trackers.split(",") for h in map(int, args.hops.split(","))
            for b in map(int, args.bands.split(",")) for q in map(int, args.f0_bits.split(","))]
    rows = []
    tracks: dict = {}
    for tracker, hop, bands, bits in grid:
        pesqs, stois, t_track = [], [], 0.0
        for i, audio in enumerate(clips):
            if (tracker, hop, i) not in tracks:
                t0 = time.perf_counter()
                tracks[(tracker, hop, i)] = TRACKERS[tracker](audio, hop)
                t_track += time.perf_counter() - t0
            f0, voiced = tracks[(tracker, hop, i)]
            y = render(audio, quantise_f0(f0, bits), voiced, bands, hop, args.mvf, args.share, args.n_fft)
            pesqs.append(pesq_scores(audio, y, SR)["pesq_wb"])
            stois.append(stoi_scores(audio, y, SR)["stoi"])
        row = {"tracker": tracker, "hop": hop, "bands": bands, "f0_bits": bits, "n": len(clips),
               "pesq_wb": float(np.nanmean(pesqs)), "stoi": float(np.mean(stois))}
        rows.append(row)
        print(f"{tracker} hop {hop} bands {bands} f0 bits {bits}: PESQ-wb {row['pesq_wb']:.2f} STOI {row['stoi']:.3f}",
              file=sys.stderr)
    print(f"\n{len(clips)} utterances from {', '.join(args.data)}; voiced: harmonic below {args.mvf:g} Hz, "
          f"{args.share:g} of the power above\n")
    print("| tracker | frame hop | envelope bands | F0 bits | PESQ-wb | STOI |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['tracker']} | {r['hop']} | {r['bands']} | {r['f0_bits'] or 'exact'} | {r['pesq_wb']:.2f} | {r['stoi']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
