"""Examples of the token LM's five tasks, made offline from a speech corpus.

``python -m hasrd.lm.recipe --speech CORPUS --out DIR [--tasks se,tse,ss,vc,lass] [--per-task N]
[--seed S] [--snrs -5,0,5,10,15] [--sirs -5,0,5]``

``CORPUS`` is a JSONL manifest with ``path``, ``voice`` (or ``speaker``) and ``text`` (or any corpus
:func:`hasrd.io.manifest.read_manifest` reads; a folder's voice is each file's parent folder).
For each task, ``--per-task`` examples are drawn (fewer when the corpus cannot make them; each
task has its own random stream, seeded by ``(seed, task)``, so one task's examples do not depend on
which others are built):

* ``se``: speech + noise of a kind of :mod:`hasrd.enhance.noise` at an SNR from ``--snrs`` -> the speech;
* ``tse``: speech + another voice's utterance at an SIR from ``--sirs`` (target over interferer,
  active levels), ``ref`` = another sentence of the target voice -> the target speech;
* ``ss``: two voices at an SIR, both whole (the shorter one zero-padded at a random offset) ->
  ``target`` (the louder one in the mixture: the LM's ``ss1``) and ``target2`` (``ss2``);
* ``vc``: an utterance, ``ref`` = a clip of another voice -> the same sentence (same ``text``)
  spoken by the ref's voice, which must be in the corpus (else the example is skipped; so is a
  pair of which either utterance was cropped, as they no longer say the same words); ``ref2`` =
  a third utterance of the ref's voice when there is one (an evaluation's similarity ceiling);
* ``lass``: speech + a noise at an SNR, ``query`` naming the source to keep (``keep the speech`` or
  ``keep the <noise name>``, :data:`QUERIES`) -> that source.

A mixture and its sources share one gain so that nothing clips. An utterance longer than
``--max-seconds`` is cropped, and its row then has ``"cropped": true`` (``"cropped2"`` for an ss
row's second voice) instead of its ``text`` (``text2``): a transcript is kept only for the whole
utterance. Writes::

    DIR/<task>/<id>_input.wav, _target.wav [, _target2.wav] [, _ref.wav] [, _ref2.wav]   16-bit PCM
    DIR/manifest.jsonl    {"task", "id", "input", "target", ["target2"], ["ref"], ["ref2"], ["query"], "text", ...}
    DIR/recipe.json       the arguments and counts

Paths in the manifest are relative to ``DIR``. The folder is built under a temporary name and
renamed at the end (as :mod:`hasrd.enhance.recipe`): an interrupted run leaves no ``DIR``.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np

from ..enhance.noise import NOISES, active_rms, make_noise, noise_at_snr, peak_gain
from ..enhance.recipe import float_list, noise_kinds
from ..io.atomic import temp_dir
from .tasks import TASKS

#: the LASS query for each source a mixture holds
QUERIES = {"speech": "keep the speech", "white": "keep the white noise", "pink": "keep the pink noise",
           "brown": "keep the brown noise", "hum": "keep the mains hum", "machine": "keep the machine noise",
           "bursts": "keep the noise bursts", "babble": "keep the babble"}


def _tasks(text: str) -> list[str]:
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise argparse.ArgumentTypeError(f"unknown task(s) {bad}; known: {', '.join(TASKS)}")
    return [t for t in TASKS if t in tasks]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hasrd.lm.recipe",
                                description="Make se/tse/ss/vc/lass examples for the token LM from a speech corpus.")
    p.add_argument("--speech", required=True, metavar="MANIFEST|DIR",
                   help="speech: a JSONL manifest with path, voice (or speaker) and text, or a folder (voice = parent folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --force)")
    p.add_argument("--tasks", type=_tasks, default=list(TASKS), metavar="LIST", help="tasks to make (default all: se,tse,ss,vc,lass)")
    p.add_argument("--per-task", type=int, default=100, metavar="N", help="examples per task (default 100)")
    p.add_argument("--snrs", type=float_list, default=[-5.0, 0.0, 5.0, 10.0, 15.0], metavar="LIST",
                   help="SNRs in dB for se and lass (default -5,0,5,10,15)")
    p.add_argument("--sirs", type=float_list, default=[-5.0, 0.0, 5.0], metavar="LIST",
                   help="target-to-interferer ratios in dB for tse and ss (default -5,0,5)")
    p.add_argument("--noises", type=noise_kinds, default=list(NOISES), metavar="LIST",
                   help=f"noise kinds for se and lass: all (default) or some of {','.join(NOISES)}")
    p.add_argument("--min-seconds", type=float, default=1.0, metavar="S", help="skip utterances shorter than S (default 1)")
    p.add_argument("--max-seconds", type=float, default=8.0, metavar="S", help="crop utterances to at most S (default 8); the row of a cropped one has "
                        "\"cropped\": true instead of its text")
    p.add_argument("--sample-rate", type=int, default=16000, metavar="SR", help="output sample rate (default 16000)")
    p.add_argument("--each", action="store_true",
                   help="an evaluation set: one example per task for every usable utterance, in corpus order, "
                        "instead of --per-task random draws (the other sources are still drawn at random)")
    p.add_argument("--vc-unpaired", action="store_true",
                   help="vc from any utterance: a ref of another voice and no target when nobody else says the "
                        "sentence (an evaluation set: scored by WER and similarity to the ref)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _norm_text(text) -> str | None:
    """Lower-cased, space-normalised text (what "the same sentence" means), None for none."""
    norm = " ".join(str(text).lower().split()) if text else ""
    return norm or None


class Corpus:
    """The corpus entries with their voice and text; audio read on demand (a few hundred kept)."""

    def __init__(self, src: str, sample_rate: int, min_seconds: float, max_seconds: float):
        from ..io.manifest import read_manifest, read_transcripts

        self.entries = read_manifest(src)
        texts = read_transcripts(Path(src) / "transcripts.tsv") if Path(src).is_dir() and (Path(src) / "transcripts.tsv").is_file() else {}
        self.voices, self.texts = [], []
        for e in self.entries:
            voice = e.extra.get("voice") or e.extra.get("speaker") or (Path(e.path).parent.name if e.audio is None else None)
            self.voices.append(str(voice) if voice else None)
            self.texts.append(e.text or texts.get(Path(e.path).stem))
        self.sr, self.min_len, self.max_len = int(sample_rate), min_seconds * sample_rate, int(max_seconds * sample_rate)
        #: the utterances that :meth:`audio` cropped to max_seconds (their text no longer fits)
        self.cropped: set[int] = set()
        self.by_voice: dict[str, list[int]] = {}
        for i, v in enumerate(self.voices):
            if v is not None:
                self.by_voice.setdefault(v, []).append(i)
        self.by_text: dict[str, list[int]] = {}
        for i, t in enumerate(self.texts):
            if _norm_text(t) and self.voices[i] is not None:
                self.by_text.setdefault(_norm_text(t), []).append(i)
        self.audio = functools.lru_cache(maxsize=256)(self._audio)

    def __len__(self) -> int:
        return len(self.entries)

    def _audio(self, i: int) -> np.ndarray | None:
        """Utterance ``i`` (float32 ``[T]``, cropped to max_seconds), or None if too short or silent."""
        from ..io.entry import load_entry

        a = load_entry(self.entries[i], self.sr, mono=True)[0][0]
        if a.size > self.max_len:
            self.cropped.add(i)
            a = a[: self.max_len]
        return a if a.size >= self.min_len and np.any(a) else None

    def other_voice(self, voice: str, rng: np.random.Generator) -> int | None:
        """An utterance of a voice other than ``voice`` (uniform over those utterances)."""
        others = [i for i, v in enumerate(self.voices) if v is not None and v != voice]
        return int(rng.choice(others)) if others else None


def _at_sir(target: np.ndarray, interferer: np.ndarray, sir_db: float, sr: int) -> np.ndarray:
    """``interferer`` scaled so that the target's active level is ``sir_db`` above its own."""
    level, other = active_rms(target, sr), active_rms(interferer, sr)
    if level == 0.0 or other == 0.0:
        raise ValueError("silent source: no SIR can be set")
    return (interferer * (level / other) * 10 ** (-sir_db / 20)).astype(np.float32)


def _fit(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` made ``n`` samples long: a random window of a longer one, a shorter one at a random offset."""
    if x.size >= n:
        start = int(rng.integers(0, x.size - n + 1))
        return x[start:start + n]
    out = np.zeros(n, np.float32)
    start = int(rng.integers(0, n - x.size + 1))
    out[start:start + x.size] = x
    return out


def _scaled(signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    g = peak_gain(list(signals.values()))
    return {k: (v * g).astype(np.float32) for k, v in signals.items()}


class Maker:
    """Draws one example of a task from the corpus: ``(audio by role, manifest fields)`` or None (skipped)."""

    def __init__(self, corpus: Corpus, args: argparse.Namespace):
        self.c, self.a = corpus, args
        self.sr = corpus.sr
        self._pool: list[np.ndarray] | None = None
        self.fixed: int | None = None  # --each: the utterance the next draw is built on

    def pool(self) -> list[np.ndarray]:
        """Babble material: the first few dozen usable utterances of the corpus (in corpus order)."""
        if self._pool is None:
            found = (self.c.audio(i) for i in range(min(len(self.c), 48)))
            self._pool = [a for a in found if a is not None]
        return self._pool

    def _speech(self, rng) -> tuple[int, np.ndarray] | None:
        i = int(rng.integers(len(self.c))) if self.fixed is None else self.fixed
        a = self.c.audio(i)
        return None if a is None else (i, a)

    def _noise(self, n: int, rng) -> tuple[str, np.ndarray]:
        kind = str(rng.choice(self.a.noises))
        return kind, make_noise(kind, n, self.sr, rng, speech=self.pool() if kind == "babble" else None)

    def _fields(self, i: int, **extra) -> dict:
        row = {"voice": self.c.voices[i], "source": str(self.c.entries[i].path)}
        if i in self.c.cropped:
            row["cropped"] = True
        elif self.c.texts[i]:
            row["text"] = self.c.texts[i]
        return {**row, **extra}

    def se(self, rng):
        got = self._speech(rng)
        if got is None:
            return None
        i, s = got
        kind, noise = self._noise(s.size, rng)
        snr = float(rng.choice(self.a.snrs))
        audio = _scaled({"input": s + noise_at_snr(s, noise, snr, self.sr), "target": s})
        return audio, self._fields(i, noise=kind, snr=snr)

    def lass(self, rng):
        got = self._speech(rng)
        if got is None:
            return None
        i, s = got
        kind, noise = self._noise(s.size, rng)
        snr = float(rng.choice(self.a.snrs))
        noise = noise_at_snr(s, noise, snr, self.sr)
        keep = "speech" if rng.random() < 0.5 else kind
        audio = _scaled({"input": s + noise, "target": s if keep == "speech" else noise})
        return audio, self._fields(i, noise=kind, snr=snr, keep=keep, query=QUERIES[keep])

    def _two_voices(self, rng):
        got = self._speech(rng)
        if got is None or self.c.voices[got[0]] is None:
            return None
        j = self.c.other_voice(self.c.voices[got[0]], rng)
        b = None if j is None else self.c.audio(j)
        return None if b is None else (*got, j, b)

    def tse(self, rng):
        got = self._two_voices(rng)
        if got is None:
            return None
        i, s, j, b = got
        text = _norm_text(self.c.texts[i])
        enroll = [k for k in self.c.by_voice[self.c.voices[i]]
                  if k != i and (text is None or _norm_text(self.c.texts[k]) != text)]
        if not enroll:
            return None
        k = int(rng.choice(enroll))
        ref = self.c.audio(k)
        if ref is None:
            return None
        sir = float(rng.choice(self.a.sirs))
        mix = s + _at_sir(s, _fit(b, s.size, rng), sir, self.sr)
        audio = {**_scaled({"input": mix, "target": s}), "ref": _scaled({"ref": ref})["ref"]}
        return audio, self._fields(i, sir=sir, interferer=self.c.voices[j], ref_source=str(self.c.entries[k].path))

    def ss(self, rng):
        got = self._two_voices(rng)
        if got is None:
            return None
        i, s, j, b = got
        n = max(s.size, b.size)  # both whole: the shorter one zero-padded
        s, b = _fit(s, n, rng), _fit(b, n, rng)
        sir = float(rng.choice(self.a.sirs))
        b = _at_sir(s, b, sir, self.sr)
        if active_rms(b, self.sr) > active_rms(s, self.sr):  # target = the louder source (ss1)
            i, s, j, b = j, b, i, s
        audio = _scaled({"input": s + b, "target": s, "target2": b})
        row = self._fields(i, sir=abs(sir), voice2=self.c.voices[j], source2=str(self.c.entries[j].path))
        if j in self.c.cropped:
            row["cropped2"] = True
        elif self.c.texts[j]:
            row["text2"] = self.c.texts[j]
        return audio, row

    def vc(self, rng):
        got = self._speech(rng)
        if got is None or self.c.voices[got[0]] is None:
            return None
        i, s = got
        text, voice = _norm_text(self.c.texts[i]), self.c.voices[i]
        if text is None:
            return None
        parallel = [k for k in self.c.by_text.get(text, []) if self.c.voices[k] != voice]
        if not parallel:
            if not self.a.vc_unpaired:
                return None  # nobody else says this sentence in the corpus
            k = self.c.other_voice(voice, rng)
            ref = None if k is None else self.c.audio(k)
            if ref is None:
                return None
            audio = {"input": _scaled({"x": s})["x"], "ref": _scaled({"x": ref})["x"]}
            return audio, self._fields(i, ref_voice=self.c.voices[k], ref_source=str(self.c.entries[k].path),
                                       **self._with_ref2(audio, self.c.voices[k], {k}, rng))
        t = int(rng.choice(parallel))
        refs = [k for k in self.c.by_voice[self.c.voices[t]] if k != t]
        if not refs:
            return None
        k = int(rng.choice(refs))
        target, ref = self.c.audio(t), self.c.audio(k)
        if target is None or ref is None or {i, t} & self.c.cropped:
            return None
        audio = {"input": _scaled({"x": s})["x"], "target": _scaled({"x": target})["x"], "ref": _scaled({"x": ref})["x"]}
        return audio, self._fields(i, target_voice=self.c.voices[t], target_source=str(self.c.entries[t].path),
                                   ref_voice=self.c.voices[k], ref_source=str(self.c.entries[k].path),
                                   **self._with_ref2(audio, self.c.voices[k], {k, t}, rng))

    def _with_ref2(self, audio: dict, voice: str, used: set[int], rng) -> dict:
        """Adds ``ref2`` to ``audio``: a usable utterance of ``voice`` other than ``used``, at random
        (none if there is none); returns its manifest fields."""
        for k in rng.permutation([k for k in self.c.by_voice.get(voice, []) if k not in used]):
            a = self.c.audio(int(k))
            if a is not None:
                audio["ref2"] = _scaled({"x": a})["x"]
                return {"ref2_source": str(self.c.entries[int(k)].path)}
        return {}


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..io.audio import save_audio

    out = Path(args.out)
    if args.per_task < 1:
        raise ValueError(f"--per-task {args.per_task}: must be at least 1")
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists (use --force to replace it)")
    corpus = Corpus(args.speech, args.sample_rate, args.min_seconds, args.max_seconds)
    if not len(corpus):
        raise ValueError(f"{args.speech}: no speech")
    maker = Maker(corpus, args)
    sr = corpus.sr
    rows, counts, skipped = [], {}, {}
    with temp_dir(out) as tmp:
        for task in args.tasks:
            rng = np.random.default_rng([args.seed, TASKS.index(task)])
            (tmp / task).mkdir()
            made = tries = 0
            bar = tqdm(total=len(corpus) if args.each else args.per_task, desc=task, unit="ex", disable=not args.progress, file=sys.stderr)
            want = len(corpus) if args.each else args.per_task
            while made < want and tries < (len(corpus) if args.each else 4 * args.per_task):
                maker.fixed = tries if args.each else None
                tries += 1
                got = getattr(maker, task)(rng)
                if got is None:
                    continue
                audio, fields = got
                uid = f"{task}_{made:05d}"
                row = {"task": task, "id": uid}
                for role in ("input", "target", "target2", "ref", "ref2"):
                    if role in audio:
                        rel = Path(task) / f"{uid}_{role}.wav"
                        save_audio(tmp / rel, audio[role][None], sr)
                        row[role] = str(rel)
                row["duration"] = round(audio["input"].size / sr, 3)
                rows.append({**row, **fields})
                made += 1
                bar.update(1)
            bar.close()
            counts[task], skipped[task] = made, tries - made
        if not rows:
            raise ValueError(f"{args.speech}: no example could be made (utterances shorter than {args.min_seconds:g} s, "
                             "silent, or one voice only)")
        with open(tmp / "manifest.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        info = {"speech": str(args.speech), "tasks": args.tasks, "per_task": None if args.each else args.per_task,
                "each": args.each, "vc_unpaired": args.vc_unpaired, "seed": args.seed,
                "snrs": args.snrs, "sirs": args.sirs, "noises": args.noises, "sample_rate": sr,
                "examples": counts, "skipped_draws": skipped}
        (tmp / "recipe.json").write_text(json.dumps(info, indent=2) + "\n")
    short = [] if args.each else [t for t in args.tasks if counts[t] < args.per_task]
    print(f"wrote {len(rows)} examples to {out}: " + ", ".join(f"{t} {counts[t]}" for t in args.tasks)
          + (f" (fewer than {args.per_task} for {', '.join(short)}: the corpus could not make more)" if short else ""),
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return build(args)
    except (ValueError, OSError) as exc:
        print(f"recipe: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
