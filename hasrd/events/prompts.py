"""Spoken prompts for speech-to-audio generation: every description of the sound-event set, spoken.

``python -m hasrd.events.prompts --events data/events --out DIR [--voices-per-text N]
[--eval-voices K] [--engines flite,festival,espeak-ng] [--seed S] [--jobs J] [--force] [--no-progress]``

``--events`` is the folder of :mod:`hasrd.events.recipe` (or its ``manifest.jsonl``). Every
distinct ``(class, description)`` pair of its rows is a text; each text is spoken by synthetic
voices with the synthesisers, voices, prosody ranges and clean-up of ``scripts/make_corpus.py``
(its functions are used, loaded from the checkout): flite, festival and espeak-ng, resampled to
16 kHz mono, trimmed to 0.1 s of silence at each end, loudness-normalised (speech RMS -23 dBFS,
peak at most -1 dBFS), PCM16.

Voices are held out whole: ``--eval-voices`` (default 3) voices, drawn from the seed by their
make_corpus weights, speak only ``eval`` prompts; the others only ``train`` prompts. Each text
gets ``--voices-per-text`` (default 4) ``train`` prompts in distinct voices, drawn per text by
weight from the seed, and one ``eval`` prompt, in a held-out voice drawn per text with equal
chances (so every held-out voice is heard); the speaking rate and pitch come from a random
generator seeded per prompt. An output make_corpus rejects (failed, clipped, silent,
implausible length) is replaced by the text's next drawn voice of the same split (at most
:data:`MAX_RETRIES` times per text and split); the rejects are listed in ``recipe.json``.
Writes::

    DIR/wavs/<class>/<id>.wav    16-bit PCM mono, 16 kHz
    DIR/manifest.jsonl           {"path", "text", "class", "voice", "engine", "split", "seconds"}
    DIR/manifest_train.jsonl     the rows of split train (train voices)
    DIR/manifest_eval.jsonl      the rows of split eval (held-out voices)
    DIR/recipe.json              the arguments, per-class and per-split counts, the voices of
                                 each split, the rejected outputs

The id is ``p<hash of class and text>_<hash of voice, text, rate, pitch>``. The same arguments
give byte-identical files (``--jobs`` does not matter; sox runs with ``-R``, its repeatable
mode, through ``SOX_OPTS``). The folder is built under a temporary name and renamed at the end:
an interrupted run leaves no ``DIR``. Errors are one line on stderr, ``prompts: error: ...``,
exit status 1, and leave nothing behind.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import random
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ..io.atomic import temp_dir

#: scripts/make_corpus.py of this checkout (the synthesisers, voices, prosody and clean-up)
MAKE_CORPUS = Path(__file__).resolve().parents[2] / "scripts" / "make_corpus.py"
#: how many further voices are tried for a text and split after rejected outputs
MAX_RETRIES = 3
ENGINES = ("flite", "festival", "espeak-ng")
SPLITS = ("train", "eval")

_MC = None


def corpus_module():
    """``scripts/make_corpus.py``, loaded once by path (the scripts are not a package)."""
    global _MC
    if _MC is None:
        if not MAKE_CORPUS.is_file():
            raise ValueError(f"{MAKE_CORPUS} not found: the prompts recipe needs a checkout of hasrd")
        name = "hasrd_make_corpus_for_prompts"
        spec = importlib.util.spec_from_file_location(name, MAKE_CORPUS)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        _MC = mod
    return _MC


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hasrd.events.prompts",
                                description="Speak every description of the sound-event set with synthetic voices.")
    p.add_argument("--events", required=True, metavar="DIR",
                   help="the sound-event set: its folder or its manifest.jsonl")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --force)")
    p.add_argument("--voices-per-text", type=int, default=4, metavar="N",
                   help="train prompts per text, each in another train voice (default 4)")
    p.add_argument("--eval-voices", type=int, default=3, metavar="K",
                   help="voices held out for the eval prompts, one eval prompt per text (default 3)")
    p.add_argument("--engines", default=",".join(ENGINES), metavar="LIST",
                   help="comma-separated synthesisers (default flite,festival,espeak-ng)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--jobs", type=int, default=2, metavar="J", help="parallel synthesis processes (default 2)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


# ---- texts -------------------------------------------------------------------------------------


def manifest_path(events: str | os.PathLike) -> Path:
    """The events manifest: ``events`` itself if it is a file, else ``events/manifest.jsonl``."""
    p = Path(events)
    path = p if p.is_file() else p / "manifest.jsonl"
    if not path.is_file():
        raise ValueError(f"no events manifest at {path} (make the set with python -m hasrd.events.recipe --out DIR)")
    return path


def collect_pairs(events: str | os.PathLike) -> list[tuple[str, str]]:
    """Every distinct ``(class, description)`` of the events manifest, in the order of first use
    (whitespace collapsed; a description shared by two classes is a text of each)."""
    path = manifest_path(events)
    pairs: dict[tuple[str, str], None] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("class"), str) or not row["class"].strip():
            raise ValueError(f"{path} line {n}: a row needs a \"class\"")
        descriptions = row.get("descriptions") or []
        if not isinstance(descriptions, list) or not all(isinstance(d, str) for d in descriptions):
            raise ValueError(f"{path} line {n}: \"descriptions\" must be a list of strings")
        for d in descriptions:
            text = " ".join(d.split())
            if text:
                pairs.setdefault((row["class"], text), None)
    if not pairs:
        raise ValueError(f"{path} has no descriptions to speak")
    return list(pairs)


# ---- voices and the plan -----------------------------------------------------------------------


def _weighted_order(voices: list, rng: random.Random, uniform: bool = False) -> list:
    """``voices`` in a random order where heavier voices tend to come first (sampling without
    replacement by weight; Efraimidis-Spirakis keys), from ``rng``; all weights 1 if ``uniform``."""
    keyed = [(-math.log(1.0 - rng.random()) / (1.0 if uniform else v.weight), v.name, v)
             for v in sorted(voices, key=lambda v: v.name)]
    return [v for _, _, v in sorted(keyed, key=lambda t: (t[0], t[1]))]


def split_voices(voices: list, eval_voices: int, seed: int) -> tuple[list, list]:
    """The train voices and the ``eval_voices`` held-out voices (drawn by weight from ``seed``),
    each list sorted by name."""
    if not 1 <= eval_voices < len(voices):
        raise ValueError(f"--eval-voices {eval_voices}: must be between 1 and {len(voices) - 1} "
                         f"(there are {len(voices)} voices)")
    order = _weighted_order(voices, random.Random(f"prompts-eval-voices-{seed}"))
    held = sorted(order[:eval_voices], key=lambda v: v.name)
    train = sorted(order[eval_voices:], key=lambda v: v.name)
    return train, held


def text_id(klass: str, text: str) -> str:
    return "p" + hashlib.sha1(f"{klass}\n{text}".encode()).hexdigest()[:10]


@dataclass
class Slot:
    """One text of one split: the voices to try in order, and how many prompts it needs."""

    klass: str
    text: str
    split: str
    need: int
    candidates: list  # make_corpus Voice objects, first the ones used, then the replacements


def plan(pairs: list[tuple[str, str]], train_voices: list, eval_voices: list, voices_per_text: int,
         seed: int) -> list[Slot]:
    """For every text a ``train`` slot (``voices_per_text`` voices, distinct, drawn by weight
    from the train voices) and an ``eval`` slot (one held-out voice, all equally likely, so that
    every held-out voice speaks), each with up to :data:`MAX_RETRIES` replacement voices; drawn
    from ``seed`` and the text alone."""
    if not 1 <= voices_per_text <= len(train_voices):
        raise ValueError(f"--voices-per-text {voices_per_text}: must be between 1 and {len(train_voices)} "
                         f"(the train voices)")
    slots = []
    for klass, text in pairs:
        for split, pool, need in (("train", train_voices, voices_per_text), ("eval", eval_voices, 1)):
            rng = random.Random(f"prompts-voices-{seed}-{split}-{klass}\n{text}")
            order = _weighted_order(pool, rng, uniform=split == "eval")
            slots.append(Slot(klass, text, split, need, order[: need + MAX_RETRIES]))
    return slots


def make_job(slot: Slot, voice, seed: int):
    """The make_corpus job that speaks ``slot``'s text in ``voice``: prosody from a generator
    seeded by the seed, the class, the text and the voice."""
    mc = corpus_module()
    rng = random.Random(f"prompts-prosody-{seed}-{slot.klass}\n{slot.text}\n{voice.name}")
    rate, pitch = mc.draw_prosody(voice, rng)
    return mc.Job(voice, slot.text, f"events:{slot.klass}", text_id(slot.klass, slot.text), rate, pitch, split=slot.split)


def class_dir(klass: str) -> str:
    """The folder name of a class under ``wavs/``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", klass).strip("-.") or "class"


# ---- synthesis (worker processes) --------------------------------------------------------------


def _synth(spec: dict, out_dir: str, work_dir: str) -> dict:
    """Speak one prompt (a job given as plain data, so any process start method can run it) with
    make_corpus's ``run_job``, then move the wav to ``out_dir/wavs/<class>/``."""
    mc = corpus_module()
    job = mc.Job(mc.Voice(**spec["voice"]), spec["text"], spec["source"], spec["sid"], spec["rate"], spec["pitch"],
                 split=spec["split"])
    res = mc.run_job(job, work_dir, str(Path(work_dir) / "tmp"))
    rel = f"wavs/{spec['dir']}/{job.uid}.wav"
    if res["ok"]:
        dst = Path(out_dir) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(work_dir) / job.rel_path, dst)
        res["record"]["path"] = rel
    else:
        res["path"] = rel
    return res


def _spec(job, klass: str) -> dict:
    return {"voice": asdict(job.voice), "text": job.text, "source": job.source, "sid": job.sid, "rate": job.rate,
            "pitch": job.pitch, "split": job.split, "dir": class_dir(klass)}


def _check_numbers(args: argparse.Namespace) -> list[str]:
    if args.voices_per_text < 1:
        raise ValueError(f"--voices-per-text {args.voices_per_text}: must be at least 1")
    if args.eval_voices < 1:
        raise ValueError(f"--eval-voices {args.eval_voices}: must be at least 1")
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: must be at least 1")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise ValueError(f"--engines {args.engines}: choose from {', '.join(ENGINES)}")
    return sorted(set(engines), key=ENGINES.index)


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    t0 = time.time()
    engines = _check_numbers(args)
    out = Path(args.out)
    pairs = collect_pairs(args.events)
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    train_voices, eval_voices = _voices(engines, args.eval_voices, args.seed)
    slots = plan(pairs, train_voices, eval_voices, args.voices_per_text, args.seed)

    bar = tqdm(total=sum(s.need for s in slots), desc="prompts", unit="clip", disable=not args.progress,
               file=sys.stderr, dynamic_ncols=True)
    old_sox_opts = os.environ.get("SOX_OPTS")
    os.environ["SOX_OPTS"] = ((old_sox_opts + " ") if old_sox_opts else "") + "-R"  # seeded dither
    pool = None
    try:
        with temp_dir(out) as tmp:
            tmp = tmp.resolve()  # the synthesisers run in folders of their own
            work = tmp / ".work"
            (work / "tmp").mkdir(parents=True)
            pool = ProcessPoolExecutor(max_workers=args.jobs) if args.jobs > 1 else None
            done, rejected = _speak(slots, args.seed, pool, tmp, work, bar)
            bar.close()
            shutil.rmtree(work)
            rows = [r for rs in done for r in rs]
            if not rows:
                example = f" (e.g. {rejected[0]['voice']}: {rejected[0]['reason']})" if rejected else ""
                raise ValueError(f"every output was rejected{example}")
            _write_manifests(tmp, rows)
            info = _recipe_info(args, engines, pairs, slots, done, rows, train_voices, eval_voices, rejected)
            (tmp / "recipe.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if old_sox_opts is None:
            os.environ.pop("SOX_OPTS", None)
        else:
            os.environ["SOX_OPTS"] = old_sox_opts
    _report(info, pairs, out, rejected, t0)
    return 0


def _voices(engines: list[str], eval_voices: int, seed: int) -> tuple[list, list]:
    """The train voices and the held-out voices of ``engines`` (their tools checked first)."""
    mc = corpus_module()
    voices = mc.all_voices(engines)
    try:
        mc.check_tools(voices, False, need_sox=any(v.pitch_mode == "sox" for v in voices))
    except mc.MissingTool as exc:
        raise ValueError(str(exc).removeprefix("make_corpus: ")) from None
    return split_voices(voices, eval_voices, seed)


def _speak(slots: list[Slot], seed: int, pool, tmp: Path, work: Path, bar) -> tuple[list[list[dict]], list[dict]]:
    """Speak every slot's prompts into ``tmp``, in rounds (each slot that still needs prompts tries
    its next voices): each slot's manifest rows, in voice order, and the rejected outputs."""
    done: list[list[dict]] = [[] for _ in slots]  # each slot's manifest rows, in voice order
    tried = [0] * len(slots)
    rejected: list[dict] = []
    while True:
        # a round: every slot that still needs prompts tries its next voices
        batch = []
        for i, slot in enumerate(slots):
            want = slot.need - len(done[i])
            while want > 0 and tried[i] < len(slot.candidates):
                batch.append((i, make_job(slot, slot.candidates[tried[i]], seed)))
                tried[i] += 1
                want -= 1
        if not batch:
            break
        specs = [_spec(job, slots[i].klass) for i, job in batch]
        work_dir = str(work)
        results = (pool.map(_synth, specs, [str(tmp)] * len(specs), [work_dir] * len(specs)) if pool
                   else (_synth(s, str(tmp), work_dir) for s in specs))
        for (i, job), res in zip(batch, results):
            slot = slots[i]
            if res["ok"]:
                rec = res["record"]
                done[i].append({"path": rec["path"], "text": slot.text, "class": slot.klass, "voice": rec["voice"],
                                "engine": rec["engine"], "split": slot.split, "seconds": rec["duration"]})
                bar.update(1)
            else:
                rejected.append({"path": res["path"], "class": slot.klass, "text": slot.text, "split": slot.split,
                                 "voice": res["voice"], "reason": res["reason"]})
    return done, rejected


def _write_manifests(folder: Path, rows: list[dict]) -> None:
    """``manifest.jsonl`` (every row), ``manifest_train.jsonl`` and ``manifest_eval.jsonl``."""
    for name, keep in (("manifest.jsonl", None), ("manifest_train.jsonl", "train"), ("manifest_eval.jsonl", "eval")):
        with open(folder / name, "w", encoding="utf-8") as fh:
            for row in rows:
                if keep is None or row["split"] == keep:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _report(info: dict, pairs: list, out: Path, rejected: list[dict], t0: float) -> None:
    """The one summary line on stderr."""
    n, v, c = info["prompts"], info["voices"], info["counts"]
    short = sum(1 for k in info["short_texts"].values() for _ in k)
    print(f"wrote {n['total']} prompts of {len(pairs)} texts ({len(c)} classes) to {out}: "
          f"train {n['train']} in {len(v['train'])} voices, eval {n['eval']} in {len(v['eval'])} held-out voices "
          f"({', '.join(info['held_out_voices'])}); "
          f"{len(rejected)} rejected, {short} texts short of prompts; {time.time() - t0:.0f} s", file=sys.stderr)


def _recipe_info(args, engines, pairs, slots, done, rows, train_voices, eval_voices, rejected) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for klass, _ in pairs:
        counts.setdefault(klass, {"texts": 0, "train": 0, "eval": 0})["texts"] += 1
    used: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for r in rows:
        counts[r["class"]][r["split"]] += 1
        used[r["split"]][r["voice"]] = used[r["split"]].get(r["voice"], 0) + 1
    short = {s: [f"{slot.klass}: {slot.text}" for slot, rs in zip(slots, done) if slot.split == s and len(rs) < slot.need]
             for s in SPLITS}
    return {
        "events": str(args.events), "voices_per_text": args.voices_per_text, "eval_voices": args.eval_voices,
        "engines": engines, "seed": args.seed, "sample_rate": corpus_module().SAMPLE_RATE,
        "texts": len(pairs),
        "prompts": {"total": len(rows), **{s: sum(1 for r in rows if r["split"] == s) for s in SPLITS}},
        "seconds": {s: round(sum(r["seconds"] for r in rows if r["split"] == s), 3) for s in SPLITS},
        "counts": counts,
        "held_out_voices": [v.name for v in eval_voices],
        "train_voice_pool": len(train_voices),
        "voices": {s: dict(sorted(used[s].items())) for s in SPLITS},
        "short_texts": short,
        "rejected": rejected,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return build(args)
    except (ValueError, OSError) as exc:
        print(f"prompts: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
