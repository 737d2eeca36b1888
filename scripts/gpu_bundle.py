#!/usr/bin/env python3
"""Build ``gpu_bundle/``: what an accelerator machine needs besides the repository to train there.

Run here (``bash scripts/gpu_bundle.sh``, which calls this); docs/training.md, section "On an
accelerator". The accelerator machine has torch, torchaudio, accelerate, numpy, scipy,
scikit-learn, safetensors, pyyaml, tqdm, tensorboard, einops, ... but not soundfile, soxr,
descript-audio-codec or vector-quantize-pytorch, and no network; a call to it carries the working
tree plus a few ignored paths, 64 MiB in all. So the bundle holds

* ``wheels/``: the wheels (cp312, manylinux x86-64) of every distribution that hasrd's training
  path imports and the machine does not have (found by running a training step here and listing
  the third-party modules it imported), ``wheels/WHEELS.txt`` naming them;
* ``corpus/``: every wav of the given manifests re-encoded as Ogg/Opus (opusenc) at a bitrate
  chosen to fit, the manifests rewritten to point at the ``.opus`` files (``corpus/<tag>/<name>``,
  every field kept), and ``corpus/train.jsonl`` / ``corpus/val.jsonl`` joining all training /
  validation manifests (a manifest whose file name contains ``val`` is a validation one);
* ``QUALITY.json``: what the compression costs (STOI and PESQ-wb of decoded against original on
  random training utterances), measured with the soundfile wheel that is carried, which also
  reads back every file written;
* ``SIZE.txt``: the sizes, and whether bundle + repository fit the limit (exit 1 with one line if not).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

#: what the accelerator machine has (its Python 3.12 environment); their own requirements are
#: taken as present too (a pip-installed package has its dependencies)
DEVICE_HAS = ("torch", "torchaudio", "transformers", "accelerate", "numpy", "scipy", "scikit-learn", "safetensors",
              "pyyaml", "tqdm", "tensorboard", "einops", "matplotlib", "huggingface-hub", "onnx", "onnxruntime",
              "pytest")
#: the part of DEVICE_HAS whose dependencies are surely there too; the dependencies that the carried
#: packages share with the rest of DEVICE_HAS (rich, pygments: huggingface-hub's through typer in
#: newer releases only) are carried as well, and installed only where missing
DEVICE_CORE = ("torch", "torchaudio", "numpy", "scipy", "scikit-learn", "accelerate", "tensorboard", "safetensors",
               "pyyaml", "tqdm", "einops", "matplotlib")
#: imported on the training path but optional there: a missing wheel is a note, not an error
#: (pesq: the trainer's validation PESQ, skipped when pesq is missing; it has no wheel, only a source release)
OPTIONAL = ("pesq",)
#: the platforms of the accelerator machine, for pip download
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
PATH_FIELDS = ("path", "noisy")  # manifest fields that name audio files (hasrd.io.manifest)
AUTO_KBPS = (12, 30)  # the range --bitrate auto chooses from (kbit/s); 31 measured worse than 30 (QUALITY.json)
OVERHEAD_BYTES = 700  # Ogg/Opus headers and page overhead per file, for the size estimate


class BundleError(RuntimeError):
    """The bundle cannot be built as asked (the message is the one line printed)."""


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------------------- wheels
def probe_imports(python: str = sys.executable) -> list[str]:
    """Third-party top-level modules that hasrd's training path imports, found by running it: one
    GAN training step of the default model's config with validation, then the shipped codec's
    encode and decode (what scripts/gpu_run.py's checks use)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "modules.txt"
        code = f"""
import sys
from hasrd.train import main
rc = main(["--config", "codec_configs/hasrd_cpu_istft.yaml", "--output-dir", {str(Path(tmp) / 'run')!r},
           "data.train=hasrd/assets/eval", "data.val=hasrd/assets/eval", "train.val_files=1", "train.val_every=1",
           "train.max_steps=1", "train.disc_start=0", "train.batch_size=2", "train.num_workers=0",
           "train.kmeans_frames=2000", "train.init_from=hasrd/pretrained/default"])
assert rc == 0, rc
import torch, hasrd
from hasrd.io.audio import load_audio
codec = hasrd.load_codec("default")
x, _ = load_audio("hasrd/assets/eval/cmu_cards_001.wav", 16000)
codec.decode(codec.encode(torch.from_numpy(x)[None]))
std = set(sys.stdlib_module_names)
tops = sorted({{m.split(".")[0] for m in list(sys.modules)}} - std)
open({str(out)!r}, "w").write("\\n".join(t for t in tops if t != "hasrd"))
"""
        r = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise BundleError(f"the import probe (one training step) failed: {r.stderr.strip().splitlines()[-1:]}")
        return out.read_text().split()


def requirement_closure(names) -> set[str]:
    """``names`` and everything they require (no extras), from this environment's metadata."""
    import importlib.metadata as md

    from packaging.markers import Marker

    seen, stack = set(), [norm(n) for n in names]
    env = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = md.requires(n) or []
        except md.PackageNotFoundError:
            continue
        for r in reqs:
            name, _, marker = r.partition(";")
            if marker.strip() and not Marker(marker).evaluate(env):
                continue
            stack.append(norm(re.match(r"[A-Za-z0-9_.-]+", name.strip()).group(0)))
    return seen


def wheel_plan(modules) -> list[tuple[str, str]]:
    """``(distribution, version)`` to carry: the distributions of ``modules`` that the accelerator
    machine lacks, at the versions of constraints.txt (else the ones installed here)."""
    import importlib.metadata as md

    dists = set()
    by_module = md.packages_distributions()
    for m in modules:
        for d in by_module.get(m, []):
            dists.add(norm(d))
    need = dists - requirement_closure(DEVICE_HAS) - {"setuptools", "hasrd"}
    shared = dists & requirement_closure(need) - {norm(d) for d in DEVICE_HAS} - requirement_closure(DEVICE_CORE)
    need = sorted(need | shared)
    pins = {}
    lock = ROOT / "constraints.txt"
    if lock.is_file():
        for line in lock.read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                n, v = line.split("==", 1)
                pins[norm(n)] = v.strip()
    return [(d, pins.get(d) or md.version(d)) for d in need]


def download_wheels(plan, folder: Path) -> tuple[list[str], list[str]]:
    """pip-download each planned wheel for the accelerator's Python 3.12 into ``folder``: (got, missing optional)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"{d}=={v}" for d, v in plan}
    got, missing = [], []
    for d, v in plan:
        have = [w for w in folder.glob("*.whl") if _wheel_dist(w) == (d, v)]
        if not have:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.12", "--implementation", "cp", "-d", str(folder), f"{d}=={v}"]
            for p in PLATFORMS:
                cmd += ["--platform", p]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0 and not build_pure_wheel(d, v, folder):
                if d in OPTIONAL:
                    missing.append(f"{d}=={v}")
                    continue
                last = [x for x in r.stderr.strip().splitlines() if x.startswith("ERROR")][-1:] or ["?"]
                raise BundleError(f"no cp312 manylinux wheel of {d}=={v}, and its source does not build a pure-Python "
                                  f"one: {last[0]}")
        got.append(f"{d}=={v}")
    for w in folder.glob("*.whl"):  # wheels of an earlier plan
        dist = _wheel_dist(w)
        if dist is None or f"{dist[0]}=={dist[1]}" not in wanted:
            w.unlink()
    return got, missing


def build_pure_wheel(dist: str, version: str, folder: Path) -> bool:
    """A distribution released as source only (argbind, julius, ...): build its wheel here and keep it
    if it is pure Python (``py3-none-any``: it installs on the accelerator's Python 3.12 too)."""
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary", dist,
                            "-w", tmp, f"{dist}=={version}"], capture_output=True, text=True)
        built = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or len(built) != 1 or not built[0].name.endswith("-none-any.whl"):
            return False
        shutil.move(str(built[0]), folder / built[0].name)
        print(f"gpu_bundle: {dist}=={version} has no wheel on the index: built {built[0].name} from its source", flush=True)
        return True


def _wheel_dist(path: Path) -> tuple[str, str] | None:
    parts = path.name.split("-")
    return (norm(parts[0]), parts[1]) if len(parts) >= 5 else None


# ---------------------------------------------------------------------------------------- corpus
def manifest_tag(manifest: Path, taken: set[str]) -> str:
    """A short folder name for a manifest's folder (``/work/data/corpus`` -> ``corpus``), unique in ``taken``."""
    base = re.sub(r"[^A-Za-z0-9_]+", "_", manifest.resolve().parent.name).strip("_") or "data"
    tag, i = base, 2
    while tag in taken:
        tag, i = f"{base}_{i}", i + 1
    return tag


def encoded_name(value: str, src_dir: Path) -> tuple[Path, str]:
    """``(source file, path of its .opus under the tag folder)`` for a manifest path field.

    A path inside the manifest's folder keeps its relative place (``wavs/v/x.wav`` ->
    ``wavs/v/x.opus``); an absolute path or one outside the folder goes to ``_ext/<hash>_<name>.opus``.
    """
    p = Path(value)
    src = p if p.is_absolute() else src_dir / p
    try:
        rel = src.resolve().relative_to(src_dir.resolve())
        return src, rel.with_suffix(".opus").as_posix()
    except ValueError:
        h = hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:10]
        return src, f"_ext/{h}_{src.stem}.opus"


def rewrite_manifest(manifest: Path, tag: str) -> list[tuple[dict, Path, dict[str, Path]]]:
    """The lines of ``manifest`` with every audio path field pointing at its .opus under ``tag``.

    One ``(object, source of its "path", {opus path relative to the corpus folder: source file})``
    a line: the object's paths relative to the tag folder, every other field as it was.
    """
    if manifest.suffix.lower() not in (".jsonl", ".json"):
        raise BundleError(f"{manifest}: only JSONL manifests are supported")
    out = []
    with open(manifest, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                obj["path"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise BundleError(f"{manifest}:{lineno}: expected a JSON object with a 'path'") from None
            jobs, main_src = {}, None
            for key in PATH_FIELDS:
                if obj.get(key) is not None:
                    src, rel = encoded_name(str(obj[key]), manifest.parent)
                    obj[key] = rel
                    jobs[f"{tag}/{rel}"] = src
                    main_src = src if key == "path" else main_src
            out.append((obj, main_src, jobs))
    return out


def is_val(manifest: Path) -> bool:
    return "val" in manifest.name.lower()


def select_hours(objs: list[dict], durations: list[float], seconds: float | None, seed: int = 0) -> list[int]:
    """Indices (in manifest order) of a seeded random subset of at most ``seconds`` of audio (all with None)."""
    if seconds is None or sum(durations) <= seconds:
        return list(range(len(objs)))
    import numpy as np

    keep, total = [], 0.0
    for i in np.random.default_rng(seed).permutation(len(objs)):
        if total + durations[i] > seconds:
            continue
        keep.append(int(i))
        total += durations[i]
    return sorted(keep)


def encode_opus(src: Path, dst: Path, kbps: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    serial = int(hashlib.sha1(dst.as_posix().encode()).hexdigest()[:7], 16)  # same bytes on every build
    tmp = dst.with_name(f".{dst.name}.tmp")
    r = subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), "--vbr", "--comp", "10", "--padding", "0",
                        "--discard-comments", "--serial", str(serial), str(src), str(tmp)], capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"opusenc failed on {src}: {r.stderr.strip()[-200:]}")
    os.replace(tmp, dst)


def repo_bytes() -> tuple[int, int]:
    """Bytes and files of the working tree that a device call carries: tracked + untracked, not ignored."""
    r = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                       capture_output=True, check=True)
    total = n = 0
    for name in sorted(set(r.stdout.decode().split("\0")) - {""}):
        p = ROOT / name
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
            n += 1
    return total, n


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def audio_seconds(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


# ---------------------------------------------------------------------------------------- checks
VERIFY = r"""
import json, sys, warnings
import numpy as np
import soundfile as sf
from hasrd.io.audio import load_audio
spec = json.load(open(sys.argv[1]))
assert sf.__file__.startswith(spec["site"]), ("not the carried soundfile", sf.__file__)
bad = []
for opus, wav in spec["files"]:
    try:
        i, j = sf.info(opus), sf.info(wav)
        if i.samplerate != j.samplerate or i.frames != j.frames or i.format != "OGG" or i.subtype != "OPUS":
            bad.append(f"{opus}: {i.format}/{i.subtype} {i.samplerate} Hz {i.frames} frames, source {j.samplerate} Hz {j.frames}")
    except Exception as exc:
        bad.append(f"{opus}: {exc}")
res = {"soundfile": sf.__version__, "libsndfile": sf.__libsndfile_version__, "files_read": len(spec["files"]),
       "unreadable_or_wrong_length": bad[:5], "n_bad": len(bad)}
from pesq import pesq
from pystoi import stoi
stois, pesqs, used, refused = [], [], [], []
for opus, wav in spec["quality"]:  # in random order, until n utterances are measured
    if len(used) == spec["n"]:
        break
    x, sr = load_audio(wav, 16000)
    y, _ = load_audio(opus, 16000)
    n = min(x.shape[-1], y.shape[-1])
    try:
        p = float(pesq(sr, x[0, :n], y[0, :n], "wb"))
    except Exception as exc:  # PESQ refuses a file it finds no speech in (a 0.75 s letter, ...)
        refused.append(f"{opus}: {exc}")
        continue
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st = float(stoi(x[0, :n], y[0, :n], sr, extended=False))
    if any("STFT frames" in str(w.message) for w in caught):  # under 30 frames of speech: STOI is undefined
        refused.append(f"{opus}: too short for STOI")
        continue
    pesqs.append(p)
    stois.append(st)
    used.append(opus)
res.update({"n_quality": len(stois), "quality_used": used, "refused": refused, "stoi_mean": float(np.mean(stois)), "stoi_min": float(np.min(stois)),
            "pesq_wb_mean": float(np.mean(pesqs)), "pesq_wb_min": float(np.min(pesqs))})
json.dump(res, open(sys.argv[2], "w"), indent=1)
"""


def verify_and_measure(pairs: list[tuple[Path, Path]], candidates: list[tuple[Path, Path]], wheels: Path,
                       n_quality: int, seed: int = 0) -> dict:
    """Read every written .opus with the carried soundfile wheel (installed into a temporary folder,
    ahead of this environment's soundfile), check rate and length against its source, and measure
    STOI and PESQ-wb of ``n_quality`` random files decoded through hasrd's ``load_audio``."""
    import numpy as np

    whl = sorted(wheels.glob("soundfile-*.whl"))
    if not whl:
        raise BundleError(f"no soundfile wheel in {wheels}: the device could not decode the corpus")
    rng = np.random.default_rng(seed)
    pick = [candidates[i] for i in rng.permutation(len(candidates))[: 5 * n_quality]]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        # the soundfile wheel is py2.py3-none-manylinux: the same file installs on this Python
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), str(whl[-1])], check=True, capture_output=True)
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"site": str(site), "files": [[str(a), str(b)] for a, b in pairs],
                                    "quality": [[str(a), str(b)] for a, b in pick], "n": n_quality}))
        out = Path(tmp) / "res.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
        r = subprocess.run([sys.executable, "-c", VERIFY, str(spec), str(out)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise BundleError(f"reading the corpus back with the carried soundfile failed: {r.stderr.strip().splitlines()[-1:]}")
        res = json.loads(out.read_text())
    res["soundfile_wheel"] = whl[-1].name
    res["quality_used"] = [str(Path(u).relative_to(ROOT)) if Path(u).is_relative_to(ROOT) else u for u in res["quality_used"]]
    if res["n_bad"]:
        raise BundleError(f"{res['n_bad']} encoded files do not read back right with {whl[-1].name}: "
                          f"{res['unreadable_or_wrong_length'][0]}")
    return res


# ---------------------------------------------------------------------------------------- main
def default_manifests() -> list[Path]:
    """The default model's training corpus (``scripts/make_corpus.py --out /work/data/corpus``)."""
    d = Path("/work/data/corpus")
    return [d / n for n in ("manifest.jsonl", "manifest_val.jsonl") if (d / n).is_file()]


def build(args) -> int:
    t_start = time.time()
    out = Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    manifests = [Path(m) for m in args.manifest] if args.manifest else default_manifests()
    if not manifests:
        raise BundleError("no manifest given (--manifest) and none found at /work/data/corpus")
    for m in manifests:
        if not m.is_file():
            raise BundleError(f"{m}: no such manifest")
    limit = int(args.limit_mib * MIB)
    out.mkdir(parents=True, exist_ok=True)

    # (a) wheels
    wheels = out / "wheels"
    if args.modules is not None:
        modules = [m for m in args.modules.split(",") if m]
    else:
        print("gpu_bundle: finding the third-party modules of the training path (one training step) ...", flush=True)
        modules = probe_imports()
    plan = wheel_plan(modules)
    got, missing = download_wheels(plan, wheels)
    note = f"# not carried (no cp312 wheel; optional on the training path): {', '.join(missing)}\n" if missing else ""
    by_module = __import__("importlib.metadata").metadata.packages_distributions()
    modules = [m for m in modules if m in by_module]
    (wheels / "WHEELS.txt").write_text(
        "# wheels for the accelerator's Python 3.12 (pip install --no-deps --target); written by scripts/gpu_bundle.py\n"
        f"# third-party modules imported on the training path: {' '.join(modules)}\n{note}" + "\n".join(got) + "\n")
    print(f"gpu_bundle: {len(got)} wheels ({tree_bytes(wheels) / MIB:.2f} MiB): {' '.join(got)}"
          + (f"; no wheel for optional {', '.join(missing)}" if missing else ""), flush=True)

    # (b) corpus: rewrite the manifests, choose the subset and the bitrate
    corpus = out / "corpus"
    tags: dict[Path, str] = {}
    rewritten = []  # (manifest, tag, [(object, source, jobs)])
    for m in manifests:
        folder = m.resolve().parent
        tags.setdefault(folder, manifest_tag(m, set(tags.values())))
        rewritten.append((m, tags[folder], rewrite_manifest(m, tags[folder])))
    seconds: dict[Path, float] = {}

    def dur(p: Path) -> float:
        if p not in seconds:
            if not p.is_file():
                raise BundleError(f"{p}: listed in a manifest but missing")
            seconds[p] = audio_seconds(p)
        return seconds[p]

    # --hours: one seeded random subset of all training manifests together (validation ones stay whole)
    pool = [(k, i) for k, (m, _, items) in enumerate(rewritten) if not is_val(m) for i in range(len(items))]
    chosen = {pool[j] for j in select_hours(pool, [dur(rewritten[k][2][i][1]) for k, i in pool],
                                            None if args.hours is None else args.hours * 3600, seed=args.seed)}
    kept = []  # (manifest, tag, [(object, source, jobs)] kept)
    for k, (m, tag, items) in enumerate(rewritten):
        kept.append((m, tag, [it for i, it in enumerate(items) if is_val(m) or (k, i) in chosen]))
    all_jobs: dict[str, Path] = {}
    for _, _, items in kept:
        for _, _, jobs in items:
            all_jobs.update(jobs)
    total_s = sum(dur(s) for s in set(all_jobs.values()))
    train_s = sum(dur(src) for m, _, items in kept if not is_val(m) for _, src, _ in items)

    manifest_text = _manifest_texts(kept)
    fixed = repo_bytes()[0] + tree_bytes(wheels) + sum(len(t.encode()) for t in manifest_text.values()) + 4096
    room = limit - MIB // 2 - fixed  # half a MiB kept free for files added to the tree later
    if args.bitrate == "auto":
        kbps = int(0.95 * (room - OVERHEAD_BYTES * len(all_jobs)) * 8 / max(total_s, 1e-9) / 1000)
        kbps = min(kbps, AUTO_KBPS[1])
        if kbps < AUTO_KBPS[0]:
            fit_h = max(0.0, (room / 1.05 - OVERHEAD_BYTES * len(all_jobs)) * 8 / 24000 / 3600 - (total_s - train_s) / 3600)
            raise BundleError(f"does not fit: {total_s / 3600:.2f} h of audio in {room / MIB:.1f} MiB needs under "
                              f"{AUTO_KBPS[0]} kbit/s; take a subset with --hours {fit_h:.1f} (fits at 24 kbit/s)")
    else:
        kbps = int(args.bitrate)
        estimate = total_s * kbps * 1000 / 8 + OVERHEAD_BYTES * len(all_jobs)
        if estimate > room:
            raise BundleError(f"does not fit: {total_s / 3600:.2f} h at {kbps} kbit/s is about {estimate / MIB:.1f} MiB, "
                              f"{room / MIB:.1f} MiB are left; take a subset with --hours H or a lower --bitrate")
    stamp = {"codec": "opus", "kbps": kbps, "encoder": "opusenc --vbr --comp 10 --padding 0"}
    stamp_path = corpus / "ENCODING.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()).get("encoding") != stamp:
        shutil.rmtree(corpus)  # another bitrate: encode everything again
    corpus.mkdir(parents=True, exist_ok=True)
    for p in corpus.rglob("*.tmp"):  # left by an interrupted build
        p.unlink()
    todo = [(src, corpus / rel) for rel, src in sorted(all_jobs.items())
            if not (corpus / rel).is_file() or src.stat().st_mtime > (corpus / rel).stat().st_mtime]
    print(f"gpu_bundle: {len(all_jobs)} files, {total_s / 3600:.2f} h ({train_s / 3600:.2f} h training) at "
          f"{kbps} kbit/s Opus; {len(todo)} to encode with {args.jobs} jobs ...", flush=True)
    t0 = time.time()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for i, _ in enumerate(pool.map(lambda j: encode_opus(j[0], j[1], kbps), todo), 1):
            if i % 500 == 0 or i == len(todo):
                print(f"  encoded {i}/{len(todo)} ({time.time() - t0:.0f} s)", flush=True)
    wanted = {(corpus / rel).resolve() for rel in all_jobs}
    for p in corpus.rglob("*.opus"):  # files of an earlier, larger selection
        if p.resolve() not in wanted:
            p.unlink()
    for p in corpus.rglob("*.jsonl"):  # manifests of an earlier build
        if p.relative_to(corpus).as_posix() not in manifest_text:
            p.unlink()
    for rel, text in manifest_text.items():
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(text)
    stamp_path.write_text(json.dumps({"encoding": stamp, "sources": {str(m): f"{tag}/{m.name}" for m, tag, _ in kept},
                                      "hours": args.hours, "seed": args.seed}, indent=1) + "\n")

    # (c) read back with the carried soundfile, measure the cost, check the size
    pairs = [(corpus / rel, src) for rel, src in sorted(all_jobs.items())]
    train_pairs = [(corpus / f"{tag}/{o['path']}", src) for m, tag, items in kept if not is_val(m) for o, src, _ in items]
    quality = None
    if not args.skip_quality:
        print(f"gpu_bundle: reading all {len(pairs)} files back with the carried soundfile wheel, STOI/PESQ-wb on "
              f"{args.quality_n} training utterances ...", flush=True)
        quality = verify_and_measure(pairs, train_pairs, wheels, args.quality_n, seed=args.seed)
        quality["kbps"] = kbps
        (out / "QUALITY.json").write_text(json.dumps(quality, indent=1) + "\n")
        print(f"gpu_bundle: decoded vs original ({quality['n_quality']} utterances): STOI {quality['stoi_mean']:.4f} "
              f"(min {quality['stoi_min']:.4f}), PESQ-wb {quality['pesq_wb_mean']:.3f} (min {quality['pesq_wb_min']:.3f})",
              flush=True)
    return report(out, limit, kbps, len(all_jobs), total_s, train_s, quality, time.time() - t_start)


def _manifest_texts(kept) -> dict[str, str]:
    """``{path under corpus/: text}``: each rewritten manifest in its tag folder, and train.jsonl /
    val.jsonl joining them (path, text and duration only; paths relative to corpus/)."""
    texts, joined = {}, {"train.jsonl": [], "val.jsonl": []}
    for m, tag, items in kept:
        texts[f"{tag}/{m.name}"] = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o, _, _ in items)
        for o, _, _ in items:
            j = {"path": f"{tag}/{o['path']}"}
            if o.get("noisy") is not None:
                j["noisy"] = f"{tag}/{o['noisy']}"
            for k in ("text", "duration"):
                if k in o:
                    j[k] = o[k]
            joined["val.jsonl" if is_val(m) else "train.jsonl"].append(json.dumps(j, ensure_ascii=False) + "\n")
    for name, lines in joined.items():
        if lines:
            texts[name] = "".join(lines)
    return texts


def report(out: Path, limit: int, kbps: int, n_files: int, total_s: float, train_s: float, quality, took: float) -> int:
    repo, n_repo = repo_bytes()
    wheels, corpus = tree_bytes(out / "wheels"), tree_bytes(out / "corpus")
    audio = sum(p.stat().st_size for p in (out / "corpus").rglob("*.opus"))
    bundle = tree_bytes(out)
    total = repo + bundle
    lines = [
        f"gpu_bundle/ written by scripts/gpu_bundle.py on {time.strftime('%Y-%m-%d %H:%M')} ({took:.0f} s)",
        f"repo (tracked + untracked, not ignored): {repo / MIB:7.2f} MiB  ({n_repo} files)",
        f"wheels/:                                 {wheels / MIB:7.2f} MiB  ({len(list((out / 'wheels').glob('*.whl')))} wheels)",
        f"corpus/ audio:                           {audio / MIB:7.2f} MiB  ({n_files} files, {total_s / 3600:.2f} h, "
        f"{train_s / 3600:.2f} h training; Opus {kbps} kbit/s VBR, actual {audio * 8 / max(total_s, 1e-9) / 1000:.1f} kbit/s)",
        f"corpus/ manifests:                       {(corpus - audio) / MIB:7.2f} MiB",
        f"bundle (gpu_bundle/):                    {bundle / MIB:7.2f} MiB",
        f"bundle + repo:                           {total / MIB:7.2f} MiB of {limit / MIB:.0f} MiB "
        f"({(limit - total) / MIB:.2f} MiB left)",
    ]
    if quality:
        lines.append(f"compression cost ({quality['n_quality']} random utterances, decoded vs original): STOI "
                     f"{quality['stoi_mean']:.4f}, PESQ-wb {quality['pesq_wb_mean']:.3f}")
    (out / "SIZE.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    if total > limit:
        raise BundleError(f"bundle {bundle / MIB:.1f} MiB + repo {repo / MIB:.1f} MiB = {total / MIB:.1f} MiB is over "
                          f"{limit / MIB:.0f} MiB: take a subset with --hours H or a lower --bitrate")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_bundle.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", action="append", default=[],
                   help="a JSONL manifest to carry (repeat; default: /work/data/corpus/manifest.jsonl and "
                        "manifest_val.jsonl, the default model's corpus); names with 'val' are validation sets")
    p.add_argument("--hours", type=float, default=None, help="carry at most this many hours of the training manifests "
                                                             "(one seeded random subset of them all; validation "
                                                             "manifests whole)")
    p.add_argument("--bitrate", default="auto", help=f"Opus kbit/s, or auto: the most in {AUTO_KBPS[0]}..{AUTO_KBPS[1]} that fits")
    p.add_argument("--out", default="gpu_bundle", help="bundle folder (default gpu_bundle/, ignored by git)")
    p.add_argument("--jobs", type=int, default=2, help="parallel opusenc processes")
    p.add_argument("--limit-mib", type=float, default=64.0, help="what one device call carries, repo included")
    p.add_argument("--quality-n", type=int, default=20, help="utterances for the STOI/PESQ-wb measurement")
    p.add_argument("--skip-quality", action="store_true", help="do not read back or measure (faster; not for a real bundle)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modules", default=None, help=argparse.SUPPRESS)  # comma list: skip the import probe (tests)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which("opusenc") is None:
        print("gpu_bundle: error: opusenc not found (apt-get install opus-tools)", file=sys.stderr)
        return 3
    try:
        return build(args)
    except BundleError as exc:
        print(f"gpu_bundle: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
