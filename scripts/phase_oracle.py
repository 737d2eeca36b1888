#!/usr/bin/env python3
"""Which half of a decoded spectrum costs the PESQ points: magnitude or phase?

    python scripts/phase_oracle.py --model default --n-q 3 --baselines codec2:3200
    python scripts/phase_oracle.py --model default --n-q 3 --baselines codec2:3200 --figure spec.png

For every utterance, each system's output is aligned to the reference (the evaluator's delay
search, ``hasrd.eval.metrics.align``) and both are taken to a short-time Fourier transform
(512-point Hann window, hop 128). Three signals are scored with PESQ-wb against the reference:

* ``output``: the output as it is;
* ``output magnitude + reference phase``: what the output would score with a perfect phase;
* ``reference magnitude + output phase``: what it would score with a perfect magnitude;
* ``output magnitude + Griffin-Lim phase``: the output's magnitudes with a phase rebuilt from
  them alone (``librosa.griffinlim``, 100 iterations from a seeded random start), knowing nothing
  of the original.

The two oracles bound how much a better phase (for example adversarial training of the
vocoder) or a better magnitude (better codes, a better spectral model) can give. Read the second
with care: at this 75 % window overlap the original's phase also carries much of the original's
short-time structure (harmonics that the output's magnitudes smear come back from it), so it is
not a pure measure of the phase. The fourth column is: if it scores about as the output does,
the output's phase is as good as any phase its own magnitudes allow, and the loss is in those
magnitudes (from the reference's magnitudes the same Griffin-Lim scores about 4.3). A second table
gives the phase distances of ``hasrd.losses.PhaseLoss`` (mean ``1 - cos`` of the phase, group
delay and instantaneous-frequency differences over the original's loud bins; 0 is the
original's phase, about 1 is chance). Prints Markdown tables of means over the utterances;
``--figure`` also draws one utterance's spectrograms, original and outputs, to look at.
For a model whose decoder renders pitch (``decoder.source: harmonic``), ``--oracle-f0`` adds a
column: PESQ-wb of the output decoded from the same codes with the decoder's predicted F0 and
voicing replaced by the original's (``hasrd.losses.pitch.yin_track``, the tracker its F0 loss
trains against), i.e. what a codec that sent the pitch exactly would gain from it; "-" for other
systems.
A third table gives two training losses of each output against the original, both signals
first low-passed at 4 kHz (Codec 2's band, so its missing upper band does not count): the mel loss
(``hasrd.losses.MultiScaleMelLoss`` with its defaults) and the linear-frequency STFT loss
(``hasrd.losses.StftLoss`` with its defaults, windows of 1024-4096 points); lower is what the
loss prefers. Where the two rank the systems differently, they ask a decoder for different things
(for example blurred harmonics against harmonics placed a little off).
Data, models and baselines take the forms of ``evaluate.py`` (``--data`` defaults to the
bundled real evaluation set).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from hasrd.eval.cli import int_list, str_list  # evaluate.py's own list parsers

N_FFT, HOP = 512, 128
GL_ITERATIONS = 100
COLUMNS = ("output", "output magnitude + reference phase", "reference magnitude + output phase",
           "output magnitude + Griffin-Lim phase")


def oracle_signals(reference: np.ndarray, degraded: np.ndarray) -> dict[str, np.ndarray]:
    """The three signals of the module docstring; ``degraded`` must already be aligned and of the
    reference's length."""
    import librosa

    ref = np.asarray(reference, np.float32)
    deg = np.asarray(degraded, np.float32)
    if ref.shape != deg.shape:
        raise ValueError(f"reference and output lengths differ: {ref.shape} vs {deg.shape}")
    R = librosa.stft(ref, n_fft=N_FFT, hop_length=HOP)
    D = librosa.stft(deg, n_fft=N_FFT, hop_length=HOP)

    def inverse(mag, phase_of):
        return librosa.istft(mag * np.exp(1j * np.angle(phase_of)), hop_length=HOP, length=ref.size)

    rebuilt = librosa.griffinlim(np.abs(D), n_iter=GL_ITERATIONS, hop_length=HOP, n_fft=N_FFT,
                                 length=ref.size, random_state=0)
    return {COLUMNS[0]: deg, COLUMNS[1]: inverse(np.abs(D), R), COLUMNS[2]: inverse(np.abs(R), D),
            COLUMNS[3]: rebuilt.astype(np.float32)}


def oracle_scores(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> dict[str, float]:
    """PESQ-wb of each of :func:`oracle_signals` (NaN where PESQ refuses the signal)."""
    from hasrd.eval.metrics import pesq_scores

    return {k: pesq_scores(reference, y, sample_rate)["pesq_wb"]
            for k, y in oracle_signals(reference, degraded).items()}


ORACLE_F0_COLUMN = "output with the original's F0"


def pitch_decoder(system):
    """The pitch-rendering decoder of a hasrd system, or None (any other system or decoder)."""
    codec = getattr(getattr(system, "model", None), "codec", None)
    if codec is None:
        return None
    return next((m for m in codec.modules() if getattr(m, "renders_pitch", False) is True), None)


def decode_with_original_f0(system, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``system``'s output for ``audio`` with its decoder's F0 and voicing replaced by the YIN
    track of ``audio`` itself (at the codec's rate and frames); the decoder is restored after."""
    import torch

    from hasrd.io.audio import resample
    from hasrd.losses.pitch import original_pitch

    decoder = pitch_decoder(system)
    if decoder is None:
        raise ValueError(f"{system.name} has no decoder that renders pitch")
    codec = system.model.codec
    wav = torch.from_numpy(resample(np.asarray(audio, np.float32), sample_rate, codec.sample_rate))[None]
    f0, logit = original_pitch(wav, codec.sample_rate, codec.hop_length)

    def given(x):
        frames = x.shape[-1]
        f, v = f0[:, :frames], logit[:, :frames]
        if f.shape[-1] < frames:  # the codec pads to whole frames: hold the last F0, unvoiced
            f = torch.cat([f, f[:, -1:].expand(-1, frames - f.shape[-1])], dim=-1)
            v = torch.cat([v, v.new_full((v.shape[0], frames - v.shape[-1]), -5.0)], dim=-1)
        return f.to(x.device), v.to(x.device)

    decoder.pitch = given  # an instance attribute shadows the method
    try:
        y, _ = system.process(audio, sample_rate)
    finally:
        del decoder.pitch
    return y


LOSS_COLUMNS = ("mel loss", "STFT loss")
LOSS_BAND_HZ = 4000


def training_losses(reference: np.ndarray, degraded: np.ndarray, sample_rate: int, losses=None) -> dict[str, float]:
    """:data:`LOSS_COLUMNS` of ``degraded`` (aligned, the reference's length) against ``reference``,
    both low-passed at :data:`LOSS_BAND_HZ` (resampled to twice that and back with soxr).
    ``losses`` reuses ``(mel, stft)`` modules; built with their defaults when None."""
    import soxr
    import torch

    from hasrd.losses import MultiScaleMelLoss, StftLoss

    mel, stft = losses or (MultiScaleMelLoss(sample_rate), StftLoss())

    def band(x):
        low = soxr.resample(np.asarray(x, np.float32), sample_rate, 2 * LOSS_BAND_HZ)
        y = soxr.resample(low, 2 * LOSS_BAND_HZ, sample_rate)[: len(x)]
        return torch.from_numpy(np.pad(y, (0, len(x) - len(y))).astype(np.float32))[None, None]

    ref, deg = band(reference), band(degraded)
    with torch.no_grad():
        return {LOSS_COLUMNS[0]: float(mel(deg, ref)), LOSS_COLUMNS[1]: float(stft(deg, ref))}


def _print_table(title: str, columns, rows: dict[str, dict[str, list]], fmt) -> None:
    """A Markdown table: one row per system, one ``fmt``-ed cell per column."""
    print(title + "\n")
    print("| system | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, cols in rows.items():
        print(f"| {name} | " + " | ".join(fmt(cols[c]) for c in columns) + " |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="PESQ-wb of each system's output with the reference's phase "
                                            "or magnitude swapped in.")
    p.add_argument("--data", default=None, help="folder, manifest or audio file (default: the bundled eval set)")
    p.add_argument("--model", action="append", default=None,
                   help="hasrd model: 'default' or a save_pretrained folder (repeatable; default: default)")
    p.add_argument("--n-q", type=int_list, default=[3], help="comma-separated codebook counts for token codecs (default 3)")
    p.add_argument("--baselines", type=str_list, default=[], help="comma-separated evaluate.py baselines, e.g. codec2:3200")
    p.add_argument("--limit", type=int, default=None, help="use only the first N utterances")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw the spectrograms (0-4 kHz, 64 ms windows) of one utterance: the original and each system's output")
    p.add_argument("--figure-utterance", type=int, default=0, metavar="N",
                   help="which utterance --figure draws (0-based; default 0)")
    p.add_argument("--oracle-f0", action="store_true",
                   help="add PESQ-wb with the original's F0 given to decoders that render pitch")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from hasrd.eval.data import load_eval_set
    from hasrd.eval.metrics import EVAL_SR, align
    from hasrd.eval.systems import SystemUnavailable, load_hasrd_model, model_systems, parse_baseline

    try:
        utts = load_eval_set(args.data, limit=args.limit)
        systems = []
        for spec in args.model or ["default"]:
            rows, skipped = model_systems(load_hasrd_model(spec), args.n_q)
            for line in skipped:
                print(line, file=sys.stderr)
            systems += rows
        systems += [parse_baseline(s) for s in args.baselines]
    except (ValueError, OSError, SystemUnavailable) as e:
        print(f"phase_oracle.py: {e}", file=sys.stderr)
        return 1
    if not systems:
        print("phase_oracle.py: no system to score", file=sys.stderr)
        return 1
    if args.figure and not 0 <= args.figure_utterance < len(utts):
        print(f"phase_oracle.py: --figure-utterance {args.figure_utterance} is not in 0..{len(utts) - 1}", file=sys.stderr)
        return 1
    drawn = {"original": utts[args.figure_utterance].audio} if args.figure else {}

    import torch

    from hasrd.eval.metrics import pesq_scores
    from hasrd.losses import PHASE_TERMS, MultiScaleMelLoss, PhaseLoss, StftLoss

    phase_loss = PhaseLoss()
    try:
        train_losses = (MultiScaleMelLoss(EVAL_SR), StftLoss())
    except ImportError as e:
        print(f"phase_oracle.py: {e}", file=sys.stderr)
        return 1
    losses = {s.name: {k: [] for k in LOSS_COLUMNS} for s in systems}
    columns = COLUMNS + ((ORACLE_F0_COLUMN,) if args.oracle_f0 else ())
    table = {s.name: {k: [] for k in columns} for s in systems}
    given_f0 = {s.name for s in systems if args.oracle_f0 and pitch_decoder(s) is not None}
    distances = {s.name: {k: [] for k in PHASE_TERMS} for s in systems}
    bar = tqdm(total=len(systems) * len(utts), desc="oracle", unit="item", file=sys.stderr,
               disable=args.no_progress)
    for s in systems:
        for i, u in enumerate(utts):
            y, _ = s.process(u.audio, EVAL_SR)  # (decoded at EVAL_SR, payload bytes)
            aligned, _ = align(u.audio, y, EVAL_SR)
            if drawn and i == args.figure_utterance:
                drawn[s.name] = aligned
            for k, v in oracle_scores(u.audio, aligned, EVAL_SR).items():
                table[s.name][k].append(v)
            if s.name in given_f0:
                y_f0, _ = align(u.audio, decode_with_original_f0(s, u.audio, EVAL_SR), EVAL_SR)
                table[s.name][ORACLE_F0_COLUMN].append(pesq_scores(u.audio, y_f0, EVAL_SR)["pesq_wb"])
            with torch.no_grad():
                terms = phase_loss.per_term(torch.from_numpy(np.asarray(aligned, np.float32))[None, None],
                                            torch.from_numpy(np.asarray(u.audio, np.float32))[None, None])
            for k, v in terms.items():
                distances[s.name][k].append(float(v))
            for k, v in training_losses(u.audio, aligned, EVAL_SR, train_losses).items():
                losses[s.name][k].append(v)
            bar.update()
    bar.close()

    _print_table(f"PESQ-wb, mean of {len(utts)} utterances (STFT {N_FFT}/{HOP})", columns, table,
                 lambda v: f"{np.nanmean(v):.2f}" if v else "-")
    _print_table(f"\nPhase distance, 1 - cos (hasrd.losses.PhaseLoss, STFT {phase_loss.n_ffts}, bins within "
                 f"{phase_loss.floor_db:g} dB of the loudest)", PHASE_TERMS, distances, lambda v: f"{np.mean(v):.3f}")
    _print_table(f"\nTraining losses against the original, both low-passed at {LOSS_BAND_HZ} Hz (mel: "
                 f"hasrd.losses.MultiScaleMelLoss, STFT: hasrd.losses.StftLoss, windows {train_losses[1].n_ffts}; "
                 "lower is preferred)", LOSS_COLUMNS, losses, lambda v: f"{np.mean(v):.3f}")
    if drawn:
        draw_spectrograms(drawn, EVAL_SR, args.figure, title=utts[args.figure_utterance].id)
        print(f"\nwrote {args.figure}", file=sys.stderr)
    return 0


def draw_spectrograms(signals: dict[str, np.ndarray], sample_rate: int, path: str, title: str = "",
                      top_hz: float = 4000.0, n_fft: int = 1024, hop: int = 64) -> None:
    """One panel per signal, on one colour scale: log-magnitude STFT up to ``top_hz``, fine
    enough in frequency (``n_fft`` / ``sample_rate`` s windows) to show the harmonics of a voice."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {k: 20 * np.log10(np.abs(librosa.stft(np.asarray(v, np.float32), n_fft=n_fft, hop_length=hop)) + 1e-6)
             for k, v in signals.items()}
    top = max(float(v.max()) for v in specs.values())
    bins = int(top_hz * n_fft / sample_rate) + 1
    fig, axes = plt.subplots(len(specs), 1, figsize=(10, 2.2 * len(specs)), sharex=True, squeeze=False)
    for ax, (name, spec) in zip(axes[:, 0], specs.items()):
        seconds = spec.shape[1] * hop / sample_rate
        ax.imshow(spec[:bins], origin="lower", aspect="auto", cmap="magma", vmin=top - 70, vmax=top,
                  extent=(0, seconds, 0, bins * sample_rate / n_fft / 1000))
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("s")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
