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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .output import clean, write, write_csv
from .stats import mean_ci

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
    from ..io.manifest import spread_indices

    return [rows[i] for i in spread_indices(len(rows), limit)]


def run_star_evaluation(star_specs: list[str], prompts: str | Path, events_eval: str | Path, judge_dir: str | Path,
                        asr: str | None = "pocketsphinx", seconds: float = 4.0, steps: int = 16, guidance: float = 2.0,
                        seed: int = 0, limit: int | None = None, progress: bool = True,
                        events_train: str | Path | None = None) -> dict:
    """Generate and judge; returns the rows, the per-class summary inputs and the latencies."""
    from .judges import make_asr

    judge = _load_judge(judge_dir, steps, seconds)
    covered = set(judge.classes)
    rows = _prompt_rows(prompts, covered, limit)
    events_eval = Path(events_eval)
    real, real_train = _real_rows(events_eval, events_train, covered)
    run = _StarRun(judge=judge, recogniser=make_asr(asr) if asr and asr != "none" else None, seconds=seconds,
                   steps=steps, guidance=guidance, seed=seed, progress=progress, rng=np.random.default_rng(seed))
    ref_audio, ref_emb, train_emb = _judge_real(run, real, real_train)
    for spec in star_specs:
        model, name, descriptions = _load_export(spec, covered)
        _codec_ceiling(run, model, name, ref_audio)
        _generate(run, model, name, descriptions, rows)
    return {"rows": run.rows, "fd": _frechet(ref_emb, train_emb, run.generated), "classes": sorted(ref_audio),
            "asr": asr, "seconds": seconds, "steps": steps,
            "guidance": guidance, "seed": seed, "prompts": str(prompts), "events_eval": str(events_eval),
            "judge": str(judge_dir), "exports": list(star_specs),
            "latency": {f"{n}/{s}": v for (n, s), v in run.latencies.items()}, "asr_seconds": run.asr_seconds}


@dataclass
class _StarRun:
    """The settings of one STAR evaluation and what it gathers as it goes."""

    judge: Any
    recogniser: Any  # the cascade's speech recogniser, or None: no cascade
    seconds: float
    steps: int
    guidance: float
    seed: int
    progress: bool
    rng: np.random.Generator  # draws the random-class conditions, over all exports in turn
    rows: list[dict] = field(default_factory=list)
    # (export, system, class) -> judge embeddings of its clips
    generated: dict[tuple[str, str, str], list[np.ndarray]] = field(default_factory=dict)
    latencies: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    asr_seconds: list[float] = field(default_factory=list)

    def judge_clip(self, name: str, system: str, cls: str, clip: np.ndarray, about: dict) -> None:
        """Embed and label one clip (at :data:`JUDGE_SR`) that should be of class ``cls``; ``about``:
        its ``prompt``, ``condition`` and ``condition_class``."""
        emb = self.judge.embed_many([clip], JUDGE_SR)
        label = self.judge.predict_embeddings(emb)[0]
        self.generated.setdefault((name, system, cls), []).append(emb[0])
        self.rows.append({"export": name, "system": system, "class": cls, **about, "judged": label,
                          "correct": float(label == cls), "seconds": round(len(clip) / JUDGE_SR, 3)})


def _load_judge(judge_dir: str | Path, steps: int, seconds: float):
    """The sound-event judge, once the generation settings are known to be sound."""
    from ..events.judge import EventJudge

    if steps < 1:
        raise StarEvalError(f"--star-steps {steps}: must be at least 1")
    if not seconds > 0:
        raise StarEvalError(f"--star-seconds {seconds}: must be more than 0")
    try:
        return EventJudge.load(judge_dir)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise StarEvalError(f"{judge_dir}: not a sound-event judge (python -m hasrd.events.judge): {exc}") from None


def _prompt_rows(prompts: str | Path, covered: set[str], limit: int | None) -> list[dict]:
    """The prompts of a class the judge covers (a note names the other classes), ``limit`` of them."""
    from ..star.data import read_prompts

    rows = _rows(read_prompts, prompts)
    skipped = sorted({r["class"] for r in rows} - covered)
    if skipped:
        print(f"evaluate: note: prompts of {len(skipped)} classes the judge does not cover are skipped: "
              f"{', '.join(skipped)}", file=sys.stderr)
    rows = [r for r in rows if r["class"] in covered]
    rows = _pick(rows, limit)
    if not rows:
        raise StarEvalError(f"{prompts}: no prompt of a class the judge covers ({', '.join(sorted(covered))})")
    return rows


def _real_rows(events_eval: Path, events_train: str | Path | None, covered: set[str]) -> tuple[list[dict], list[dict]]:
    """The real held-out events and the real training events (none without their manifest) of the
    classes the judge covers."""
    from ..star.data import read_events

    real = [r for r in _rows(read_events, events_eval) if r["class"] in covered]
    train_manifest = Path(events_train) if events_train else events_eval.with_name("manifest_train.jsonl")
    real_train = [r for r in _rows(read_events, train_manifest) if r["class"] in covered] if train_manifest.is_file() else []
    return real, real_train


def _judge_real(run: _StarRun, real: list[dict], real_train: list[dict]) -> tuple[dict, dict, dict]:
    """The real clips, the judge's own floor: ``(held-out audio by class, its embeddings by class,
    embeddings of the training clips of each class with two or more)``; a row per held-out clip."""
    sr = JUDGE_SR
    ref_audio: dict[str, list[np.ndarray]] = {}
    for r in real:
        audio = _load(r["path"], sr)
        ref_audio.setdefault(r["class"], []).append(audio)
    # every clip is embedded once: the judge's label and the Fréchet distance both use that vector
    ref_emb = {cls: run.judge.embed_many(clips, sr) for cls, clips in ref_audio.items()}
    for cls, emb in ref_emb.items():
        for label in run.judge.predict_embeddings(emb):
            run.rows.append({"export": "-", "system": "real", "class": cls, "prompt": "", "condition": "(held-out clip)",
                             "condition_class": cls, "judged": label, "correct": float(label == cls), "seconds": None})
    train_emb: dict[str, np.ndarray] = {}
    for cls in ref_audio:
        clips = [_load(r["path"], sr) for r in real_train if r["class"] == cls]
        if len(clips) >= 2:
            train_emb[cls] = run.judge.embed_many(clips, sr)
    return ref_audio, ref_emb, train_emb


def _load_export(spec: str, covered: set[str]):
    """``(model, its name in the report, its descriptions of the classes the judge covers)``."""
    from ..star import load_speak_to_audio
    from ..star.pipeline import StageOneError

    try:
        model = load_speak_to_audio(spec).eval()
    except (FileNotFoundError, ValueError) as exc:
        raise StarEvalError(f"--star {spec}: {exc}") from None
    if model.stage < 2:
        raise StarEvalError(f"--star {spec}: {StageOneError.__doc__.strip()} cannot generate; give a stage-2 export")
    descriptions = {c: list(d) for c, d in model.meta["classes"].items() if c in covered}
    if not descriptions:
        raise StarEvalError(f"--star {spec}: none of its classes is one the judge covers")
    name = Path(spec).name if Path(spec).name not in ("export", "best") else Path(spec).parent.name
    return model, name, descriptions


def _codec_ceiling(run: _StarRun, model, name: str, ref_audio: dict[str, list[np.ndarray]]) -> None:
    """The ceiling: the held-out clips through this export's codec (encode, float16 latent, decode)."""
    for cls, clips in ref_audio.items():
        for clip in clips:
            recon = _through_codec(model.codec, clip, JUDGE_SR)
            run.judge_clip(name, "codec", cls, recon, {"prompt": "", "condition": "(held-out clip through the codec)",
                                                       "condition_class": cls})


def _generate(run: _StarRun, model, name: str, descriptions: dict[str, list[str]], rows: list[dict]) -> None:
    """Every prompt through every generating system of this export, judged."""
    from tqdm import tqdm

    prompt_sr = int(model.encoder.sample_rate)
    others = sorted(descriptions)
    bar = tqdm(rows, desc=f"star {name}", unit="prompt", disable=not run.progress, file=sys.stderr)
    for k, r in enumerate(bar):
        made = _clips_of_prompt(run, model, name, r, k, prompt_sr, descriptions, others)
        for system, (clip, clip_sr, condition, cond_class) in made.items():
            clip = _resample(np.asarray(clip, dtype=np.float32).reshape(-1), clip_sr, JUDGE_SR)
            run.judge_clip(name, system, r["class"], clip, {"prompt": Path(r["path"]).name, "condition": condition,
                                                            "condition_class": cond_class})
    bar.close()


def _clips_of_prompt(run: _StarRun, model, name: str, r: dict, k: int, prompt_sr: int,
                     descriptions: dict[str, list[str]], others: list[str]) -> dict[str, tuple]:
    """system -> (clip, its rate, what conditioned it, the class of that condition if known), for
    the ``k``-th prompt ``r``; the latencies of ``star`` and ``cascade`` are logged in ``run``."""
    prompt = _load(r["path"], prompt_sr)
    kw = {"seconds": run.seconds, "steps": run.steps, "seed": run.seed + k, "guidance": run.guidance}
    t0 = time.perf_counter()
    audio, out_sr = model.generate(prompt, prompt_sr, **kw)
    run.latencies.setdefault((name, "star"), []).append(time.perf_counter() - t0)
    made = {"star": (audio, out_sr, "(spoken prompt)", r["class"])}
    if run.recogniser is not None:
        t0 = time.perf_counter()
        transcript = run.recogniser.transcribe(_load(r["path"], 16000)).strip()
        t_asr = time.perf_counter() - t0
        run.asr_seconds.append(t_asr)
        t0 = time.perf_counter()
        audio_c, sr_c = model.generate_from_text(transcript, **kw)
        run.latencies.setdefault((name, "cascade"), []).append(t_asr + time.perf_counter() - t0)
        made["cascade"] = (audio_c, sr_c, transcript, None)
    made["text"] = (*model.generate_from_text(r["text"], **kw), r["text"], r["class"])
    pool = [c for c in others if c != r["class"]] or others
    wrong = pool[int(run.rng.integers(len(pool)))]
    wrong_text = descriptions[wrong][int(run.rng.integers(len(descriptions[wrong])))]
    made["random-class"] = (*model.generate_from_text(wrong_text, **kw), wrong_text, wrong)
    return made


def _frechet(ref_emb: dict, train_emb: dict, generated: dict) -> dict[str, dict[str, float | None]]:
    """``"export/system" -> class -> Fréchet distance`` to the real held-out clips of the class
    (``-/real``: the training clips'), where both sides have two clips or more."""
    from ..events.judge import frechet_distance

    fd: dict[str, dict[str, float | None]] = {}
    for cls, emb in ref_emb.items():
        if cls in train_emb and len(emb) >= 2:
            fd.setdefault("-/real", {})[cls] = frechet_distance(train_emb[cls], emb)
    for (name, system, cls), embs in generated.items():
        if len(embs) >= 2 and len(ref_emb.get(cls, [])) >= 2:
            fd.setdefault(f"{name}/{system}", {})[cls] = frechet_distance(np.stack(embs), ref_emb[cls])
    return fd


def _through_codec(codec, clip: np.ndarray, sr: int) -> np.ndarray:
    import torch

    x = torch.from_numpy(_resample(clip, sr, int(codec.sample_rate))).view(1, 1, -1)
    with torch.inference_mode():
        z = codec.encode_to_latent(x, quantize=True)
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
    write(files["summary"], star_markdown(result, summary))
    write_csv(files["rows"], result["rows"])
    write(files["json"], json.dumps(clean({**{k: v for k, v in result.items() if k != "rows"}, "summary": summary}),
                                    indent=2))
    png = plot_star(summary, result["classes"], out / "star.png")
    if png:
        files["plot"] = png
    return files
