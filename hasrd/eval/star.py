"""Scoring speech-to-audio generation (``evaluate.py --star``): does the generated clip hold the
class the spoken prompt asked for, how far is it from real clips of that class, and how long does
it take against a cascade.

For every prompt of a spoken-prompt manifest (``python -m hasrd.events.prompts``; rows with
``path``, ``text``, ``class``), each STAR export (:func:`hasrd.star.load_speak_to_audio`) makes:

* ``star``: the clip generated from the spoken prompt (bridge, then the flow generator);
* ``cascade``: the recogniser's transcript of the prompt (``--asr``, pocketsphinx by default),
  then the same generator conditioned on that text (``generate_from_text``);
* ``text``: the generator conditioned on the prompt's true description (the cascade with a
  perfect recogniser);
* ``random-class``: the generator conditioned on a description of another class drawn at
  random (seeded), scored against the class that was asked for: the chance floor.

Plus ``real``: the held-out real clips of each class (the events manifest's ``eval`` split), and
per export ``codec``: those clips through the export's continuous codec (the generator's ceiling).
A fixed judge (:class:`hasrd.events.judge.EventJudge`, trained on the training events) labels
every clip; the accuracy is the share labelled with the asked-for class. The Fréchet distance is
between the judge's embedding of a system's clips of a class and of the real held-out clips of
that class (``real``: its training clips against its held-out ones, the floor). Prompts of a
class the judge does not cover are skipped with a note.

Latency is wall time on this machine from a complete prompt to the complete clip (generation is
not streamed, so first audio = all audio): ``star`` is one ``generate`` call, ``cascade`` the
recogniser plus ``generate_from_text``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .report import _clean, _write, _write_csv, mean_ci

SYSTEMS = ("real", "codec", "star", "cascade", "text", "random-class")


#: the rate every clip is judged at (the events' and the continuous codec's rate)
JUDGE_SR = 16000


class StarEvalError(ValueError):
    """A bad argument or input of the STAR evaluation (one line)."""


def _rows(reader, manifest) -> list[dict]:
    try:
        return reader(manifest)
    except (FileNotFoundError, ValueError) as exc:
        raise StarEvalError(str(exc)) from None


def _load(path, sr: int) -> np.ndarray:
    from ..io.audio import load_audio

    return load_audio(path, sr)[0][0]


def _pick(rows: list[dict], limit: int | None) -> list[dict]:
    """``limit`` rows spread evenly over the manifest (all when ``limit`` is None)."""
    if not limit or limit >= len(rows):
        return rows
    from ..train.trainer import spread_indices

    return [rows[i] for i in spread_indices(len(rows), limit)]


def run_star_evaluation(star_specs: list[str], prompts: str | Path, events_eval: str | Path, judge_dir: str | Path,
                        asr: str | None = "pocketsphinx", seconds: float = 4.0, steps: int = 16, guidance: float = 2.0,
                        seed: int = 0, limit: int | None = None, progress: bool = True,
                        events_train: str | Path | None = None) -> dict:
    """Generate and judge; returns the rows, the per-class summary inputs and the latencies."""
    from tqdm import tqdm

    from ..events.judge import EventJudge, frechet_distance
    from ..star import load_speak_to_audio
    from ..star.data import read_events, read_prompts
    from ..star.pipeline import StageOneError
    from .judges import make_asr

    if steps < 1:
        raise StarEvalError(f"--star-steps {steps}: must be at least 1")
    if not seconds > 0:
        raise StarEvalError(f"--star-seconds {seconds}: must be more than 0")
    try:
        judge = EventJudge.load(judge_dir)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise StarEvalError(f"{judge_dir}: not a sound-event judge (python -m hasrd.events.judge): {exc}") from None
    covered = set(judge.classes)
    rows = _rows(read_prompts, prompts)
    skipped = sorted({r["class"] for r in rows} - covered)
    if skipped:
        print(f"evaluate: note: prompts of {len(skipped)} classes the judge does not cover are skipped: "
              f"{', '.join(skipped)}", file=sys.stderr)
    rows = [r for r in rows if r["class"] in covered]
    rows = _pick(rows, limit)
    if not rows:
        raise StarEvalError(f"{prompts}: no prompt of a class the judge covers ({', '.join(sorted(covered))})")
    events_eval = Path(events_eval)
    real = [r for r in _rows(read_events, events_eval) if r["class"] in covered]
    train_manifest = Path(events_train) if events_train else events_eval.with_name("manifest_train.jsonl")
    real_train = [r for r in _rows(read_events, train_manifest) if r["class"] in covered] if train_manifest.is_file() else []
    recogniser = make_asr(asr) if asr and asr != "none" else None
    sr = JUDGE_SR

    # the real clips: the judge's own floor
    ref_audio: dict[str, list[np.ndarray]] = {}
    out_rows: list[dict] = []
    for r in real:
        audio = _load(r["path"], sr)
        ref_audio.setdefault(r["class"], []).append(audio)
    # every clip is embedded once: the judge's label and the Fréchet distance both use that vector
    ref_emb = {cls: judge.embed_many(clips, sr) for cls, clips in ref_audio.items()}
    for cls, emb in ref_emb.items():
        for label in judge.predict_embeddings(emb):
            out_rows.append({"export": "-", "system": "real", "class": cls, "prompt": "", "condition": "(held-out clip)",
                             "condition_class": cls, "judged": label, "correct": float(label == cls), "seconds": None})
    train_emb: dict[str, np.ndarray] = {}
    for cls in ref_audio:
        clips = [_load(r["path"], sr) for r in real_train if r["class"] == cls]
        if len(clips) >= 2:
            train_emb[cls] = judge.embed_many(clips, sr)

    generated: dict[tuple[str, str, str], list[np.ndarray]] = {}  # (export, system, class) -> judge embeddings
    latencies: dict[tuple[str, str], list[float]] = {}
    asr_seconds: list[float] = []
    rng = np.random.default_rng(seed)
    for spec in star_specs:
        try:
            model = load_speak_to_audio(spec).eval()
        except (FileNotFoundError, ValueError) as exc:
            raise StarEvalError(f"--star {spec}: {exc}") from None
        if model.stage < 2:
            raise StarEvalError(f"--star {spec}: {StageOneError.__doc__.strip()} cannot generate; give a stage-2 export")
        prompt_sr = int(model.encoder.sample_rate)
        descriptions = {c: list(d) for c, d in model.meta["classes"].items() if c in covered}
        if not descriptions:
            raise StarEvalError(f"--star {spec}: none of its classes is one the judge covers")
        others = sorted(descriptions)
        name = Path(spec).name if Path(spec).name not in ("export", "best") else Path(spec).parent.name
        # the ceiling: the held-out clips through this export's codec (encode, float16 latent, decode)
        for cls, clips in ref_audio.items():
            for clip in clips:
                recon = _through_codec(model.codec, clip, sr)
                emb = judge.embed_many([recon], sr)
                label = judge.predict_embeddings(emb)[0]
                generated.setdefault((name, "codec", cls), []).append(emb[0])
                out_rows.append({"export": name, "system": "codec", "class": cls, "prompt": "",
                                 "condition": "(held-out clip through the codec)", "condition_class": cls,
                                 "judged": label, "correct": float(label == cls), "seconds": round(len(recon) / sr, 3)})
        bar = tqdm(rows, desc=f"star {name}", unit="prompt", disable=not progress, file=sys.stderr)
        for k, r in enumerate(bar):
            prompt = _load(r["path"], prompt_sr)
            kw = {"seconds": seconds, "steps": steps, "seed": seed + k, "guidance": guidance}
            t0 = time.perf_counter()
            audio, out_sr = model.generate(prompt, prompt_sr, **kw)
            latencies.setdefault((name, "star"), []).append(time.perf_counter() - t0)
            # system -> (clip, its rate, what conditioned it, the class of that condition if known)
            made = {"star": (audio, out_sr, "(spoken prompt)", r["class"])}
            if recogniser is not None:
                t0 = time.perf_counter()
                transcript = recogniser.transcribe(_load(r["path"], 16000)).strip()
                t_asr = time.perf_counter() - t0
                asr_seconds.append(t_asr)
                t0 = time.perf_counter()
                audio_c, sr_c = model.generate_from_text(transcript, **kw)
                latencies.setdefault((name, "cascade"), []).append(t_asr + time.perf_counter() - t0)
                made["cascade"] = (audio_c, sr_c, transcript, None)
            made["text"] = (*model.generate_from_text(r["text"], **kw), r["text"], r["class"])
            pool = [c for c in others if c != r["class"]] or others
            wrong = pool[int(rng.integers(len(pool)))]
            wrong_text = descriptions[wrong][int(rng.integers(len(descriptions[wrong])))]
            made["random-class"] = (*model.generate_from_text(wrong_text, **kw), wrong_text, wrong)
            for system, (clip, clip_sr, condition, cond_class) in made.items():
                clip = _resample(np.asarray(clip, dtype=np.float32).reshape(-1), clip_sr, sr)
                emb = judge.embed_many([clip], sr)
                label = judge.predict_embeddings(emb)[0]
                generated.setdefault((name, system, r["class"]), []).append(emb[0])
                out_rows.append({"export": name, "system": system, "class": r["class"], "prompt": Path(r["path"]).name,
                                 "condition": condition, "condition_class": cond_class, "judged": label,
                                 "correct": float(label == r["class"]), "seconds": round(len(clip) / sr, 3)})
        bar.close()

    fd: dict[str, dict[str, float | None]] = {}
    for cls, emb in ref_emb.items():
        if cls in train_emb and len(emb) >= 2:
            fd.setdefault("-/real", {})[cls] = frechet_distance(train_emb[cls], emb)
    for (name, system, cls), embs in generated.items():
        if len(embs) >= 2 and len(ref_emb.get(cls, [])) >= 2:
            fd.setdefault(f"{name}/{system}", {})[cls] = frechet_distance(np.stack(embs), ref_emb[cls])
    return {"rows": out_rows, "fd": fd, "classes": sorted(ref_audio), "asr": asr, "seconds": seconds, "steps": steps,
            "guidance": guidance, "seed": seed, "prompts": str(prompts), "events_eval": str(events_eval),
            "judge": str(judge_dir), "exports": list(star_specs),
            "latency": {f"{n}/{s}": v for (n, s), v in latencies.items()}, "asr_seconds": asr_seconds}


def _through_codec(codec, clip: np.ndarray, sr: int) -> np.ndarray:
    import torch

    x = torch.from_numpy(_resample(clip, sr, int(codec.sample_rate))).view(1, 1, -1)
    with torch.inference_mode():
        z = codec.encode_latent(x).half().float()
        y = codec.decode_latent(z)[0, 0, : x.shape[-1]].float().numpy()
    return _resample(y, int(codec.sample_rate), sr)


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    import librosa

    return librosa.resample(x, orig_sr=sr, target_sr=target).astype(np.float32)


def summarize_star(result: dict) -> list[dict]:
    """One row per (export, system): accuracy overall and per class, the mean Fréchet distance."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault((r["export"], r["system"]), []).append(r)
    order = {s: i for i, s in enumerate(SYSTEMS)}
    out = []
    for (name, system), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] != "-", kv[0][0], order.get(kv[0][1], 9))):
        per_class = {}
        for cls in result["classes"]:
            hits = [r["correct"] for r in rows if r["class"] == cls]
            per_class[cls] = float(np.mean(hits)) if hits else None
        fds = result["fd"].get(f"{name}/{system}", {})
        lat = result["latency"].get(f"{name}/{system}")
        out.append({"export": name, "system": system, "n": len(rows),
                    "accuracy": mean_ci([r["correct"] for r in rows]), "per_class": per_class,
                    "fd": float(np.mean(list(fds.values()))) if fds else None, "fd_per_class": fds,
                    "latency_median": float(np.median(lat)) if lat else None,
                    "latency_p90": float(np.percentile(lat, 90)) if lat else None})
    return out


def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None or not np.isfinite(v) else fmt.format(v)


def star_markdown(result: dict, summary: list[dict]) -> str:
    classes = result["classes"]
    lines = ["# Speech-to-audio generation", "",
             f"Prompts: `{result['prompts']}`; judge: `{result['judge']}`; real held-out clips: `{result['events_eval']}`. "
             f"{result['seconds']} s per clip, {result['steps']} ODE steps, guidance {result['guidance']}, seed {result['seed']}; "
             f"cascade recogniser: {result['asr'] or 'none'}.", "",
             "Accuracy: share of clips the judge labels with the asked-for class (mean ± 95 % CI). "
             "FD: Fréchet distance to the real held-out clips of the class, on the judge's embedding (mean over classes; "
             "`real`: its training clips against its held-out ones). Latency: complete prompt to complete clip, "
             "median and 90th percentile, seconds.", "",
             "| export | system | n | accuracy | FD | latency s (median / p90) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for s in summary:
        acc = s["accuracy"]
        lat = "-" if s["latency_median"] is None else f"{s['latency_median']:.2f} / {s['latency_p90']:.2f}"
        lines.append(f"| {s['export']} | {s['system']} | {s['n']} | {_f(acc['mean'])} ± {_f(acc['ci95'])} | "
                     f"{_f(s['fd'], '{:.1f}')} | {lat} |")
    lines += ["", "Accuracy per class:", "", "| export | system | " + " | ".join(classes) + " |",
              "| --- | --- | " + " | ".join("---:" for _ in classes) + " |"]
    for s in summary:
        lines.append(f"| {s['export']} | {s['system']} | " + " | ".join(_f(s["per_class"][c]) for c in classes) + " |")
    if result["asr_seconds"]:
        lines += ["", f"Recogniser alone: median {np.median(result['asr_seconds']):.2f} s per prompt."]
    return "\n".join(lines) + "\n"


def plot_star(summary: list[dict], classes: list[str], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    width = 0.8 / max(1, len(summary))
    x = np.arange(len(classes))
    for i, s in enumerate(summary):
        vals = [s["per_class"][c] if s["per_class"][c] is not None else np.nan for c in classes]
        ax.bar(x + i * width, vals, width, label=f"{s['export']}/{s['system']}" if s["export"] != "-" else "real")
    ax.set_xticks(x + 0.4 - width / 2, classes, rotation=20)
    ax.set_ylim(0, 1.05); ax.set_ylabel("judged as the asked class"); ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8); ax.set_title("accuracy per class")
    ax = axes[1]
    timed = [s for s in summary if s["latency_median"] is not None]
    ax.bar(range(len(timed)), [s["latency_median"] for s in timed], color="C1")
    ax.set_xticks(range(len(timed)), [f"{s['export']}/{s['system']}" for s in timed], rotation=20, fontsize=8)
    ax.set_ylabel("seconds (median)"); ax.set_title("prompt to clip"); ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_star_report(result: dict, output: str | Path) -> dict[str, Path]:
    """``star_summary.md``, ``star_rows.csv``, ``star.json`` and ``star.png`` in ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize_star(result)
    files = {"summary": out / "star_summary.md", "rows": out / "star_rows.csv", "json": out / "star.json"}
    _write(files["summary"], star_markdown(result, summary))
    _write_csv(files["rows"], result["rows"])
    _write(files["json"], json.dumps(_clean({**{k: v for k, v in result.items() if k != "rows"}, "summary": summary}),
                                     indent=2))
    png = plot_star(summary, result["classes"], out / "star.png")
    if png:
        files["plot"] = png
    return files
