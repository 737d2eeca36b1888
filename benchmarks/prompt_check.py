"""How often the spoken-prompt check (hasrd/star/prompt_check.py) is wrong.

Speech (should pass): data/corpus/manifest_val.jsonl and hasrd/assets/eval/*.wav (real and
synthetic speech; evaluation only, which calibrating a detector is). Non-speech (should be
refused): data/events/manifest_eval.jsonl. Prints the false rejection rate on speech and the false
acceptance rate per event class (and, with --features, every clip's figures)::

    python benchmarks/prompt_check.py [--limit N] [--features] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rows(manifest: Path, key: str | None) -> list[tuple[Path, str]]:
    out = []
    for line in manifest.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out.append((manifest.parent / r["path"], r[key] if key else "speech"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpus" / "manifest_val.jsonl"))
    p.add_argument("--assets", default=str(ROOT / "hasrd" / "assets" / "eval"))
    p.add_argument("--events", default=str(ROOT / "data" / "events" / "manifest_eval.jsonl"))
    p.add_argument("--limit", type=int, default=0, help="at most N files of each source (0: all)")
    p.add_argument("--features", action="store_true", help="print every file's figures")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)

    from hasrd.io.audio import load_audio
    from hasrd.star.prompt_check import check_prompt, prompt_features

    speech = _rows(Path(args.corpus), None) if Path(args.corpus).is_file() else []
    speech += [(f, "speech") for f in sorted(Path(args.assets).glob("*.wav"))] if Path(args.assets).is_dir() else []
    events = _rows(Path(args.events), "class") if Path(args.events).is_file() else []
    if args.limit:
        speech, events = speech[: args.limit], events[: args.limit]
    result = {"speech_files": len(speech), "false_rejections": [], "event_classes": {}}
    accepted, total = defaultdict(int), defaultdict(int)
    for kind, items in (("speech", speech), ("event", events)):
        for path, label in items:
            x, sr = load_audio(path, mono=True)
            try:
                check_prompt(x[0], sr)
                ok, why = True, ""
            except ValueError as exc:
                ok, why = False, str(exc)
            if args.features:
                f = prompt_features(x[0], sr)
                f = f.as_dict() if hasattr(f, "as_dict") else dict(f)
                print(f"{kind:6s} {label:12s} {'pass' if ok else 'refuse'} " + " ".join(
                    f"{k}={v:.2f}" for k, v in f.items()) + f"  {path.name}")
            if kind == "speech" and not ok:
                result["false_rejections"].append(f"{path.name}: {why}")
            if kind == "event":
                total[label] += 1
                accepted[label] += ok
    fr = len(result["false_rejections"]) / max(len(speech), 1)
    result["false_rejection_rate"] = fr
    result["event_classes"] = {c: {"clips": total[c], "accepted": accepted[c], "false_acceptance": accepted[c] / total[c]}
                               for c in sorted(total)}
    n_ev = sum(total.values())
    result["false_acceptance_rate"] = sum(accepted.values()) / max(n_ev, 1)
    print(f"speech: {len(result['false_rejections'])}/{len(speech)} falsely rejected ({100 * fr:.1f}%)")
    for line in result["false_rejections"]:
        print(f"  {line}")
    print(f"events: {sum(accepted.values())}/{n_ev} falsely accepted ({100 * result['false_acceptance_rate']:.1f}%)")
    for c, v in result["event_classes"].items():
        print(f"  {c:14s} {v['accepted']}/{v['clips']} ({100 * v['false_acceptance']:.0f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
