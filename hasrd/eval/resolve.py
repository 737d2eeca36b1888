"""From the command line's specs to what an evaluation runs: the judges that can run here, and
the systems under test (models, enhancers, baselines), with one skip line for each that cannot."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .metrics import EVAL_SR
from .options import EvalError, EvalOptions


def check_judges(opts: EvalOptions) -> tuple[dict, list[str]]:
    """Judge specs that can run here, and one skip line for each that cannot (checked cheaply,
    without loading any model)."""
    from .judges import JudgeUnavailable, load_hook

    specs = {"asr": opts.asr, "speaker": opts.speaker, "mos": opts.mos, "mos_hook": opts.mos_hook}
    skipped = []
    needs = {"pocketsphinx": "pocketsphinx", "resemblyzer": "resemblyzer", "dnsmos": "speechmos"}
    for kind in ("asr", "speaker", "mos"):
        spec = specs[kind]
        if not spec or spec == "none":
            specs[kind] = None
            continue
        if spec in needs:
            pkgs = [needs[spec]] + (["onnxruntime"] if spec == "dnsmos" else [])
            missing = [p for p in pkgs if importlib.util.find_spec(p) is None]
            if missing:
                skipped.append(f"skip judge {kind}={spec}: package {', '.join(missing)} not installed "
                               f"(pip install {' '.join(missing)})")
                specs[kind] = None
        elif kind == "mos":
            raise EvalError(f"unknown --mos {spec!r}: use dnsmos or none (other predictors via --mos-hook)")
        elif not Path(spec).is_dir():
            skipped.append(f"skip judge {kind}={spec}: no such local model folder (judges never download)")
            specs[kind] = None
    if specs["mos_hook"]:
        try:
            load_hook(specs["mos_hook"])
        except JudgeUnavailable as exc:
            skipped.append(f"skip judge mos_hook: {exc}")
            specs["mos_hook"] = None
    return specs, skipped


def build_systems(opts: EvalOptions, noisy: bool = False) -> tuple[list, list, list[str]]:
    """``(systems, hasrd_models, skip lines)``; the reference comes first, preceded by the noisy
    ``input`` when the set has noisy inputs (``noisy``); then models, enhancers, baselines."""
    from .systems import InputSystem, ReferenceSystem, load_hasrd_model, model_systems

    systems: list = ([InputSystem(EVAL_SR)] if noisy else []) + [ReferenceSystem(EVAL_SR)]
    models, skipped = [], []
    for spec in opts.models:
        try:
            model = load_hasrd_model(spec)
        except (FileNotFoundError, ValueError) as exc:
            raise EvalError(f"--model {spec}: {exc}") from None
        labels = {m.label for m in models}
        if model.label in labels:
            model.label = f"{model.label}{len(models) + 1}"
        models.append(model)
        rows, skips = model_systems(model, opts.n_q, opts.bound)  # per n_q; one row for a continuous codec
        if not rows:
            raise EvalError(f"--model {spec}: no row to score ({'; '.join(skips) or 'no --n-q it can decode'})")
        systems += rows
        skipped += skips
    systems += enhancer_systems(opts.enhancers, {s.name for s in systems})
    baselines, skips = baseline_systems(opts.baselines)
    systems += baselines
    skipped += skips
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EvalError(f"systems named twice: {', '.join(dup)}")
    return systems, models, skipped


def baseline_systems(specs: list[str]) -> tuple[list, list[str]]:
    """One system per ``--baselines`` spec, and a skip line for each that cannot run here (a
    missing tool or package); a malformed spec is an :class:`EvalError`."""
    from .systems import SystemUnavailable, parse_baseline

    systems, skipped = [], []
    for spec in specs:
        if not spec.strip():
            continue
        try:
            systems.append(parse_baseline(spec))
        except SystemUnavailable as exc:
            skipped.append(f"skip {exc}")
        except ValueError as exc:
            raise EvalError(f"--baselines {spec}: {exc}") from None
    return systems, skipped


def enhancer_systems(specs: list[str], taken: set[str]) -> list:
    """One :class:`~hasrd.eval.systems.EnhancerSystem` per ``--enhancer`` folder; a name already
    taken gets a number (as a second model of the same folder name does)."""
    from .systems import load_enhancer_system

    out = []
    for spec in specs:
        try:
            system = load_enhancer_system(spec)
        except ImportError as exc:
            raise EvalError(f"--enhancer {spec}: hasrd.enhance cannot be imported ({exc})") from None
        except (OSError, ValueError) as exc:
            raise EvalError(f"--enhancer {spec}: {exc}") from None
        if system.name in taken:
            system.name = f"{system.name}{len(out) + 2}"
        taken.add(system.name)
        out.append(system)
    return out
