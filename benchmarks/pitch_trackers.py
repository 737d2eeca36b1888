#!/usr/bin/env python
"""Pitch trackers at the codec's frames, against a careful reference (see docs/pitch.md).

For every candidate tracker and every speech set (held-out real speech, held-out synthetic
speech), at the codec's frames (frame ``f`` centred on sample ``f * hop + hop / 2``, 20 ms at
16 kHz):

* GPE: share of the frames voiced in both the reference and the tracker whose F0 is more than
  20 % off the reference's;
* FPE: median absolute error in cents over the other frames voiced in both;
* VDE: share of the scored frames whose voiced/unvoiced decision differs from the reference's
  (also split into misses, voiced frames called unvoiced, and false alarms, unvoiced called
  voiced, each a share of the scored frames);
* RTF: seconds of compute per second of audio on ``--threads`` threads (torch and BLAS), after
  one warm-up call.

The reference is a slow, careful pair: Praat's autocorrelation pitch (``to_pitch_ac``, 5 ms
steps, "very accurate" Gaussian windows, 15 candidates, 50-500 Hz) and librosa's pYIN (5 ms
hop, 64 ms frames, 50-500 Hz). A frame is scored only where the two agree: both unvoiced, or
both voiced with F0s within ``--agree-cents`` (100, a semitone) of each other (its F0 is then Praat's); the frames
where they disagree are left out of every number (their share is printed).

    python benchmarks/pitch_trackers.py                                   # everything, table on stdout
    python benchmarks/pitch_trackers.py --per-set 60 --json out/pitch.json --cache out/pitch_ref
    python benchmarks/pitch_trackers.py --trackers hasrd,fcpe --per-set 10  # a quick look
    python benchmarks/pitch_trackers.py --list                            # the tracker names
    python benchmarks/pitch_trackers.py --merge out/a.json out/b.json     # one table from several runs
    python benchmarks/pitch_trackers.py --real data/real/manifest.jsonl --synthetic data/corpus/manifest.jsonl \
        --trackers hasrd --hasrd-args '{"window_periods": 1.5}'          # tune hasrd's settings on training data

Only training-side data: the manifests default to ``data/real/manifest_val.jsonl`` and
``data/corpus/manifest_val.jsonl`` (JSON lines with a ``path`` relative to the manifest's
folder); a missing manifest is skipped. Never point it at the evaluation set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)


FMIN, FMAX = 50.0, 500.0
GROSS = 0.2  # a gross error: more than 20 % off


# --------------------------------------------------------------------------------------------
# data


def load_set(manifest: Path, per_set: int, sample_rate: int) -> list[dict]:
    """Up to ``per_set`` utterances of ``manifest``, spread over its speakers (round robin over
    ``speaker`` or ``voice``, each speaker's in manifest order)."""
    import numpy as np
    import soundfile as sf

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    by_spk: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_spk[str(r.get("speaker", r.get("voice", "")))].append(r)
    picked: list[dict] = []
    queues = [list(v) for _, v in sorted(by_spk.items())]
    while len(picked) < per_set and any(queues):
        for q in queues:
            if q and len(picked) < per_set:
                picked.append(q.pop(0))
    out = []
    for r in picked:
        x, sr = sf.read(manifest.parent / r["path"], dtype="float32", always_2d=True)
        x = x.mean(1)
        if sr != sample_rate:
            import soxr

            x = soxr.resample(x, sr, sample_rate).astype(np.float32)
        out.append({"id": str(r.get("id", r["path"])), "audio": np.ascontiguousarray(x)})
    return out


def frame_times(n: int, sample_rate: int, hop: int):
    import numpy as np

    frames = -(-n // hop)
    return (np.arange(frames) * hop + hop / 2) / sample_rate


def _fit(a, frames: int, fill: float = 0.0):
    """``a`` cut or padded (with its last value, or ``fill`` if empty) to ``frames``."""
    import numpy as np

    a = np.asarray(a, np.float64).reshape(-1)
    if len(a) >= frames:
        return a[:frames]
    pad = a[-1] if len(a) else fill
    return np.concatenate([a, np.full(frames - len(a), pad)])


def _at_times(times, values, t):
    """Sample a track with frames at ``times`` (0 = unvoiced) at ``t``: voiced where the nearest
    frame is voiced, F0 interpolated in log between two voiced neighbours (else the nearest's)."""
    import numpy as np

    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float64)
    if len(times) == 0:
        return np.zeros(len(t)), np.zeros(len(t), bool)
    dt = times[1] - times[0] if len(times) > 1 else 1.0
    pos = (t - times[0]) / dt
    near = np.clip(np.round(pos).astype(int), 0, len(times) - 1)
    inside = (pos > -0.5) & (pos < len(times) - 0.5)
    voiced = inside & (values[near] > 0)
    lo = np.clip(np.floor(pos).astype(int), 0, len(times) - 1)
    hi = np.clip(lo + 1, 0, len(times) - 1)
    w = np.clip(pos - lo, 0.0, 1.0)
    both = (values[lo] > 0) & (values[hi] > 0)
    f0 = np.where(both, np.exp((1 - w) * np.log(np.maximum(values[lo], 1e-3)) + w * np.log(np.maximum(values[hi], 1e-3))),
                  values[near])
    return np.where(voiced, f0, 0.0), voiced


# --------------------------------------------------------------------------------------------
# the reference


def reference_track(x, sample_rate: int, hop: int, agree_cents: float) -> dict:
    """The reference at the codec's frames: ``f0`` and ``state`` (1 voiced, f0 Praat's; 0
    unvoiced; -1 left out: the two references disagree on voicing, or on F0 by more than
    ``agree_cents``), and each reference alone (``praat_f0``, ``praat_v``, ``pyin_f0``, ``pyin_v``)."""
    import librosa
    import numpy as np
    import parselmouth

    t = frame_times(len(x), sample_rate, hop)
    snd = parselmouth.Sound(x.astype(np.float64), sampling_frequency=sample_rate)
    p = snd.to_pitch_ac(time_step=0.005, pitch_floor=FMIN, max_number_of_candidates=15, very_accurate=True,
                        pitch_ceiling=FMAX)
    pf, pv = _at_times(p.xs(), p.selected_array["frequency"], t)
    # pYIN every hop/4 samples with librosa's centred frames: codec frame f is pYIN frame 4f + 2
    fine = hop // 4
    yf, yv, _ = librosa.pyin(x, fmin=FMIN, fmax=FMAX, sr=sample_rate, frame_length=1024, hop_length=fine)
    idx = np.clip(np.arange(len(t)) * 4 + 2, 0, len(yv) - 1)
    yf, yv = np.nan_to_num(yf[idx]), yv[idx].astype(bool)
    cents = 1200 * np.abs(np.log2(np.maximum(pf, 1e-3) / np.maximum(yf, 1e-3)))
    state = np.full(len(t), -1, np.int8)
    state[~pv & ~yv] = 0
    state[pv & yv & (cents <= agree_cents)] = 1
    return {"f0": np.where(state == 1, pf, 0.0), "state": state, "praat_f0": pf, "praat_v": pv,
            "pyin_f0": np.where(yv, yf, 0.0), "pyin_v": yv}


def references(sets: dict, sample_rate: int, hop: int, agree_cents: float, cache: Path | None) -> None:
    import numpy as np

    keys = ("f0", "state", "praat_f0", "praat_v", "pyin_f0", "pyin_v")
    for name, utts in sets.items():
        t0 = time.perf_counter()
        for u in utts:
            path = None
            if cache is not None:
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in u["id"])
                path = cache / f"{name}_{safe}_{sample_rate}_{hop}_{agree_cents:g}.npz"
                if path.exists():
                    z = np.load(path)
                    if all(k in z for k in keys):
                        u["ref"] = {k: z[k] for k in keys}
                        continue
            u["ref"] = reference_track(u["audio"], sample_rate, hop, agree_cents)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, **u["ref"])
        print(f"reference for {name}: {len(utts)} utterances, {time.perf_counter() - t0:.1f} s", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# the candidates: each (audio float32 [T], sample_rate, hop) -> (f0 [F], voiced [F] bool)


def _yin(x, sr, hop):
    import torch

    from hasrd.losses.pitch import yin_track

    f0, v = yin_track(torch.from_numpy(x)[None], sr, hop, fmin=FMIN, fmax=FMAX)
    return f0[0].numpy(), v[0].numpy()


def _pyin(x, sr, hop, resolution=0.1):
    import librosa
    import numpy as np

    frames = -(-len(x) // hop)
    # librosa centres frame i on sample i * hop: drop hop/2 samples so that it lands on the codec's
    f0, v, _ = librosa.pyin(x[hop // 2:], fmin=FMIN, fmax=FMAX, sr=sr, frame_length=1024, hop_length=hop,
                            resolution=resolution)
    return _fit(np.nan_to_num(f0), frames), _fit(v, frames) > 0.5


def _pyin_coarse(x, sr, hop):
    return _pyin(x, sr, hop, resolution=0.25)


def _world(x, sr, hop, method="dio"):
    import numpy as np
    import pyworld

    frames = -(-len(x) // hop)
    period_ms = 1000.0 * hop / 2 / sr  # frames every hop/2: frame 2f + 1 is the codec's frame f
    xd = x.astype(np.float64)
    if method == "dio":
        f0, t = pyworld.dio(xd, sr, f0_floor=FMIN, f0_ceil=FMAX, frame_period=period_ms)
        f0 = pyworld.stonemask(xd, f0, t, sr)
    else:
        f0, t = pyworld.harvest(xd, sr, f0_floor=FMIN, f0_ceil=FMAX, frame_period=period_ms)
    f0 = _fit(f0[1::2], frames)
    return f0, f0 > 0


def _harvest(x, sr, hop):
    return _world(x, sr, hop, "harvest")


_FCPE = {}


def _fcpe(x, sr, hop, threshold=0.006):
    import numpy as np
    import torch
    import torchfcpe

    if "m" not in _FCPE:
        _FCPE["m"] = torchfcpe.spawn_bundled_infer_model("cpu")
    m = _FCPE["m"]
    frames = -(-len(x) // hop)
    mhop = m.get_hop_size()  # 160 at 16 kHz; its frame i is centred on sample i * mhop + mhop / 2
    assert sr == m.get_model_sr() and hop % (2 * mhop) == 0
    w = torch.from_numpy(np.pad(x, (mhop // 2, 0)))[None, :, None]
    with torch.no_grad():
        mel = m.wav2mel(w, sr)
        latent = m.model(mel)  # [1, F', 360]
        cents = m.model.latent2cents_local_decoder(latent, threshold=threshold, mask=False)
        f0 = m.model.cent_to_f0(cents)[0, :, 0].numpy()
        conf = latent.max(-1).values[0].numpy()
    step = hop // mhop
    idx = np.arange(frames) * step + step // 2
    idx = np.clip(idx, 0, len(f0) - 1)
    return np.clip(f0[idx], FMIN, FMAX), conf[idx] > threshold


def _crepe(x, sr, hop, model="tiny"):
    import torch
    import torchcrepe

    frames = -(-len(x) // hop)
    audio = torch.from_numpy(x[hop // 2:].copy())[None]
    f0, per = torchcrepe.predict(audio, sr, hop, FMIN, FMAX, model, return_periodicity=True, device="cpu",
                                 batch_size=512)
    per = torchcrepe.filter.median(per, 3)
    per = torchcrepe.threshold.Silence(-60.0)(per, audio, sr, hop)
    f0, per = f0[0].numpy(), per[0].numpy()
    return _fit(f0, frames), _fit(per, frames) > 0.21


def _crepe_full(x, sr, hop):
    return _crepe(x, sr, hop, "full")


def _praat(x, sr, hop):
    import numpy as np
    import parselmouth

    t = frame_times(len(x), sr, hop)
    snd = parselmouth.Sound(x.astype(np.float64), sampling_frequency=sr)
    p = snd.to_pitch_ac(time_step=hop / 2 / sr, pitch_floor=FMIN, pitch_ceiling=FMAX)
    return _at_times(p.xs(), p.selected_array["frequency"], t)


HASRD_ARGS: dict = {}  # keyword arguments for hasrd.pitch.track.track (--hasrd-args)


def _hasrd(x, sr, hop):
    from hasrd.pitch.track import track

    f0, voicing = track(x, sr, hop, **HASRD_ARGS)
    return f0, voicing > 0.5


TRACKERS = {
    "yin": ("hasrd.losses.pitch.yin_track (batched torch YIN, threshold 0.25)", _yin),
    "pyin": ("librosa.pyin at the codec's hop (64 ms frames, 0.1-semitone HMM)", _pyin),
    "pyin-coarse": ("librosa.pyin at the codec's hop, 0.25-semitone HMM", _pyin_coarse),
    "dio": ("pyworld dio + stonemask", _world),
    "harvest": ("pyworld harvest", _harvest),
    "fcpe": ("torchfcpe bundled model (10 ms frames), confidence > 0.006", _fcpe),
    "crepe-tiny": ("torchcrepe tiny, Viterbi, periodicity > 0.21 after median 3 and -60 dB silence gate", _crepe),
    "crepe-full": ("torchcrepe full, as crepe-tiny", _crepe_full),
    "praat": ("parselmouth to_pitch_ac, default settings, hop/2 steps", _praat),
    "hasrd": ("hasrd.pitch.track (the shipped tracker)", _hasrd),
}


# --------------------------------------------------------------------------------------------
# scoring


def score(utts: list[dict], fn, sample_rate: int, hop: int, repeats: int = 1) -> dict:
    import numpy as np

    secs = sum(len(u["audio"]) for u in utts) / sample_rate
    # warm-up (model loading, numba compilation) on the first utterance
    fn(utts[0]["audio"], sample_rate, hop)
    compute = 0.0
    n_scored = n_both = n_gross = n_miss = n_fa = 0
    alone = {k: [0, 0, 0, 0] for k in ("praat", "pyin")}  # frames, V/UV differences, both voiced, gross
    fine: list[np.ndarray] = []
    for u in utts:
        best = float("inf")
        for _ in range(max(1, repeats)):  # the fastest of the repeats: the least disturbed by other load
            t0 = time.perf_counter()
            f0, voiced = fn(u["audio"], sample_rate, hop)
            best = min(best, time.perf_counter() - t0)
        compute += best
        f0, voiced = np.asarray(f0, np.float64), np.asarray(voiced, bool)
        state, ref = u["ref"]["state"], u["ref"]["f0"]
        assert len(f0) == len(state) == len(voiced), (len(f0), len(state), len(voiced))
        keep = state >= 0
        rv = state == 1
        n_scored += int(keep.sum())
        n_miss += int((rv & ~voiced).sum())
        n_fa += int(((state == 0) & voiced).sum())
        both = rv & voiced
        n_both += int(both.sum())
        ratio = f0[both] / ref[both]
        gross = np.abs(ratio - 1) > GROSS
        n_gross += int(gross.sum())
        fine.append(np.abs(1200 * np.log2(np.maximum(ratio[~gross], 1e-6))))
        for k, a in alone.items():
            rv1, rf1 = u["ref"][f"{k}_v"].astype(bool), u["ref"][f"{k}_f0"]
            b1 = rv1 & voiced
            a[0] += len(rv1)
            a[1] += int((rv1 != voiced).sum())
            a[2] += int(b1.sum())
            a[3] += int((np.abs(f0[b1] / rf1[b1] - 1) > GROSS).sum())
    fine_all = np.concatenate(fine) if fine else np.zeros(0)
    pct = lambda a, b: 100.0 * a / b if b else float("nan")  # noqa: E731
    return {"gpe": pct(n_gross, n_both), "fpe_cents": float(np.median(fine_all)) if fine_all.size else float("nan"),
            "vde": pct(n_miss + n_fa, n_scored), "miss": pct(n_miss, n_scored), "false_alarm": pct(n_fa, n_scored),
            "rtf": compute / secs, "frames": n_scored, "voiced_frames": n_both, "seconds": secs,
            **{f"vde_{k}_alone": pct(a[1], a[0]) for k, a in alone.items()},
            **{f"gpe_{k}_alone": pct(a[3], a[2]) for k, a in alone.items()}}


def print_table(results: dict, hop: int, sample_rate: int, threads: int) -> None:
    print(f"Frames: {hop} samples at {sample_rate} Hz; threads: {threads}.")
    for sname, s in results["sets"].items():
        print(f"- {sname}: {s['utterances']} utterances, {s['seconds']:.1f} s, {s['frames']} frames, "
              f"{s['scored_pct']:.1f} % scored (the reference pair agrees), {s['voiced_pct']:.1f} % voiced")
    print()
    print("| tracker | set | GPE % | FPE cents | VDE % | miss % | false alarm % | RTF |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, per_set in results["trackers"].items():
        for sname in results["sets"]:
            r = per_set.get(sname)
            if r is None:
                continue
            if "error" in r:
                print(f"| {name} | {sname} | {r['error']} | | | | | |")
                continue
            print(f"| {name} | {sname} | {r['gpe']:.2f} | {r['fpe_cents']:.1f} | {r['vde']:.2f} | {r['miss']:.2f} | "
                  f"{r['false_alarm']:.2f} | {r['rtf']:.4f} |")
    print()
    print("Against each reference alone, on every frame (a tracker of the same family as one reference is")
    print("favoured by it; the other is the fairer judge):")
    print()
    print("| tracker | set | VDE % vs Praat | GPE % vs Praat | VDE % vs pYIN | GPE % vs pYIN |")
    print("|---|---|---:|---:|---:|---:|")
    for name, per_set in results["trackers"].items():
        for sname in results["sets"]:
            r = per_set.get(sname)
            if r is None or "error" in r:
                continue
            print(f"| {name} | {sname} | {r['vde_praat_alone']:.2f} | {r['gpe_praat_alone']:.2f} | "
                  f"{r['vde_pyin_alone']:.2f} | {r['gpe_pyin_alone']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(ROOT / "data/real/manifest_val.jsonl"), help="held-out real speech manifest")
    ap.add_argument("--synthetic", default=str(ROOT / "data/corpus/manifest_val.jsonl"),
                    help="held-out synthetic speech manifest")
    ap.add_argument("--per-set", type=int, default=60, help="utterances per set, spread over speakers")
    ap.add_argument("--trackers", default=",".join(TRACKERS), help="comma-separated names (--list)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--hop", type=int, default=320)
    ap.add_argument("--agree-cents", type=float, default=100.0,
                    help="a voiced reference frame needs Praat and pYIN within this many cents")
    ap.add_argument("--cache", default=None, help="folder to keep the reference tracks in between runs")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per utterance, the fastest counted")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="print one table from earlier --json outputs (the later file wins for a tracker) and exit")
    ap.add_argument("--hasrd-args", default=None, metavar="JSON",
                    help='settings for the hasrd tracker, e.g. \'{"unvoiced_weight": 1e-4}\' (tune on training manifests)')
    ap.add_argument("--list", action="store_true", help="print the tracker names and exit")
    args = ap.parse_args(argv)
    if args.merge:
        merged: dict = {"sets": {}, "trackers": {}}
        for f in args.merge:
            r = json.loads(Path(f).read_text())
            merged["sets"].update(r["sets"])
            for k, v in r["trackers"].items():
                merged["trackers"].setdefault(k, {}).update(v)
            a = r.get("args", {})
        print_table(merged, a.get("hop", args.hop), a.get("sample_rate", args.sample_rate), a.get("threads", args.threads))
        return 0
    if args.list:
        for k, (desc, _) in TRACKERS.items():
            print(f"{k:12s} {desc}")
        return 0
    if args.hasrd_args:
        HASRD_ARGS.update(json.loads(args.hasrd_args))
    _set_threads(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.trackers.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        ap.error(f"unknown trackers {unknown} (known: {', '.join(TRACKERS)})")
    sets = {}
    for name, m in (("real", args.real), ("synthetic", args.synthetic)):
        if m and Path(m).exists():
            sets[name] = load_set(Path(m), args.per_set, args.sample_rate)
        else:
            print(f"no {name} manifest at {m}: skipped", file=sys.stderr)
    if not sets:
        ap.error("no manifest found")
    references(sets, args.sample_rate, args.hop, args.agree_cents, Path(args.cache) if args.cache else None)
    results: dict = {"sets": {}, "trackers": {}}
    for sname, utts in sets.items():
        st = np.concatenate([u["ref"]["state"] for u in utts])
        results["sets"][sname] = {"utterances": len(utts), "seconds": sum(len(u["audio"]) for u in utts) / args.sample_rate,
                                  "frames": int(len(st)), "scored_pct": 100.0 * float((st >= 0).mean()),
                                  "voiced_pct": 100.0 * float((st == 1).mean())}
    for name in names:
        desc, fn = TRACKERS[name]
        results["trackers"][name] = {"description": desc}
        for sname, utts in sets.items():
            try:
                r = score(utts, fn, args.sample_rate, args.hop, args.repeats)
            except Exception as e:  # a tracker that is not installed, or fails
                r = {"error": f"{type(e).__name__}: {e}"}
            results["trackers"][name][sname] = r
            print(f"{name} {sname}: {r}", file=sys.stderr)
    print_table(results, args.hop, args.sample_rate, args.threads)
    if args.json:
        results["args"] = vars(args)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
