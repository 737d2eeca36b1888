#!/usr/bin/env python3
"""A tiny stand-in for the LibriSpeech GPU recipe (docs/training.md, "Reproducing HASRD on
LibriSpeech (GPU)"), so that the recipe's commands can be dry-run on a CPU without a download.

    python scripts/librispeech_standin.py --out /tmp/ls_dry

writes into OUT what the recipe's download steps would leave, at toy size:

* ``librispeech_{recordings,supervisions}_{PART}.jsonl.gz`` for the parts ``train-clean-100``,
  ``train-clean-360``, ``dev-clean`` (synthetic voiced signals, 16 kHz FLAC under
  ``OUT/LibriSpeech/PART/``) and ``test-clean`` (the bundled real speech of
  ``hasrd/assets/eval`` with its transcripts), named as ``lhotse prepare librispeech`` names
  them and written with lhotse's own API, sorted by recording id as ``lhotse cut simple`` wants;
* ``wavlm_tiny/`` and ``hubert_tiny/``: random tiny WavLM and HuBERT models (``save_pretrained``)
  standing in for ``microsoft/wavlm-base-plus`` and ``facebook/hubert-base-ls960``;
* ``overrides.txt``: the ``key=value`` overrides (one a line, no spaces: ``$(cat ...)`` passes them) that shrink
  ``codec_configs/hasrd_librispeech.yaml`` to these stand-ins and to a few steps; everything
  else (the SSL encoder and teacher, bf16 autocast, the Lhotse data) stays as configured, except
  ``train.compile`` (off: compiling on a CPU takes longer than the dry run).

Needs the ``corpora`` extra (lhotse). Exit 0, or 2 with one line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
#: the tiny SSL architecture (HuBERT and WavLM alike): 2 layers of width 32, 50 Hz frames
TINY_SSL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
#: synthetic parts: (part, speakers, utterances per speaker)
SYNTHETIC = (("train-clean-100", 2, 3), ("train-clean-360", 1, 3), ("dev-clean", 1, 2))
WORDS = "the of and to a in he i that was it his you with had as for her".split()


def voiced(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A voiced, amplitude-modulated harmonic signal with pauses (deterministic)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * (0.7 + 0.3 * rng.random()) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 10))
    syllables = np.clip(np.sin(2 * np.pi * (3 + rng.random()) * t), 0, None) ** 0.5
    x = x * syllables
    x = 0.25 * x / np.abs(x).max() + 0.002 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def make_standin(out: Path) -> list[str]:
    """Write the stand-in into ``out``; returns the overrides (also in ``out/overrides.txt``)."""
    import soundfile as sf
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, list[tuple[Path, str, str]]] = {}
    for p, (part, n_spk, n_utt) in enumerate(SYNTHETIC):
        items = []
        for s in range(n_spk):
            spk = f"{100 * (p + 1) + s}"
            for u in range(n_utt):
                seed = 1000 * p + 10 * s + u
                folder = out / "LibriSpeech" / part / spk / "1"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{spk}-1-{u:04d}.flac"
                sf.write(path, voiced(1.2 + 0.3 * u, 95 + 40 * s + 15 * p, seed), SR)
                words = np.random.default_rng(seed).choice(WORDS, 4)
                items.append((path, " ".join(words).upper(), spk))
        parts[part] = items
    eval_dir = ROOT / "hasrd" / "assets" / "eval"
    texts = dict(line.rstrip("\n").split("\t", 1) for line in (eval_dir / "transcripts.tsv").read_text().splitlines()
                 if "\t" in line)
    parts["test-clean"] = [(eval_dir / name, text.upper(), name.rsplit("_", 1)[0]) for name, text in sorted(texts.items())
                           if (eval_dir / name).is_file()]
    for part, items in parts.items():
        recs = sorted((Recording.from_file(path, recording_id=path.stem) for path, _, _ in items), key=lambda r: r.id)
        sups = [SupervisionSegment(id=path.stem, recording_id=path.stem, start=0.0, duration=rec.duration,
                                   channel=0, text=text, speaker=spk, language="English")
                for (path, text, spk), rec in zip(sorted(items, key=lambda it: it[0].stem), recs)]
        RecordingSet.from_recordings(recs).to_file(out / f"librispeech_recordings_{part}.jsonl.gz")
        SupervisionSet.from_segments(sups).to_file(out / f"librispeech_supervisions_{part}.jsonl.gz")
    WavLMModel(WavLMConfig(**TINY_SSL)).save_pretrained(out / "wavlm_tiny")
    HubertModel(HubertConfig(**TINY_SSL)).save_pretrained(out / "hubert_tiny")
    overrides = [
        f"data.train={out / 'librispeech_cuts_train-960.jsonl.gz'}",
        f"data.val={out / 'librispeech_cuts_dev-clean.jsonl.gz'}",
        f"model.encoder.pretrained={out / 'wavlm_tiny'}",
        "model.encoder.num_layers=2",
        "model.latent_dim=32",
        "model.quantizer.codebook_size=64",
        "model.decoder.channels=32",
        "model.semantic_head.dim=32",
        "model.semantic_head.n_units=16",
        f"teacher.pretrained={out / 'hubert_tiny'}",
        "teacher.layers=[2]",
        "teacher.n_units=16",
        "discriminator.periods=[2,3]",
        "discriminator.period_channels=4",
        "discriminator.period_max_channels=16",
        "discriminator.fft_sizes=[512]",
        "discriminator.stft_channels=4",
        "train.batch_size=2",
        "train.segment_seconds=0.64",
        "train.max_steps=3",
        "train.disc_start=0",
        "train.warmup_steps=0",
        "train.ckpt_every=3",
        "train.log_every=1",
        "train.val_every=3",
        "train.val_files=2",
        "train.num_workers=0",
        "train.kmeans_frames=1000",
        "train.compile=false",
    ]
    (out / "overrides.txt").write_text("\n".join(overrides) + "\n")
    return overrides


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder to write the stand-in into")
    args = p.parse_args(argv)
    try:
        make_standin(args.out)
    except ImportError as exc:
        print(f"librispeech_standin.py: error: {exc.name or exc} is missing: pip install \"hasrd[corpora]\"", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"librispeech_standin.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the LibriSpeech stand-in to {args.out}; overrides in {args.out / 'overrides.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
