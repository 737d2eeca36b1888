"""Disentanglement probes: does codebook 1 carry the content and the rest the acoustics?

Three measurements, all on the evaluation set:

1. Content: WER/CER of audio decoded from codebook 1 alone against all codebooks (taken from
   the ``n_q`` rows of the main table).
2. Speaker: cosine similarity of the decoded audio's speaker embedding to the original's, for
   codebook 1 alone against all codebooks (also from the main table).
3. Phonetic information per codebook: the transcript is force-aligned to phones with
   PocketSphinx (US English acoustic model, 10 ms frames), each codec frame gets the phone
   under its centre, and for every codebook ``k`` we count phone/code co-occurrences over the
   whole set (silence frames left out) to get

   * PNMI = I(phone; code) / H(phone) (phone-normalised mutual information, 0..1), and
   * phone purity = sum over codes of the count of the code's most frequent phone / frames,

   next to the same numbers with the code sequence randomly permuted (the chance level, which
   is above zero on a small set because many codes see few frames).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from .metrics import EVAL_SR
from .text import normalize_text

PS_FRAME_RATE = 100.0  # PocketSphinx frames per second
SILENCE = {"SIL", "+SPN+", "+NSN+", "+BREATH+", "+NOISE+", "+COUGH+", "+LAUGH+", "+UH+", "+UM+", "+SMACK+"}


class AlignmentError(RuntimeError):
    """The transcript could not be aligned to the audio (out-of-vocabulary word, failed search)."""


def _aligner():
    # A fresh decoder for every utterance: a reused one keeps state from the previous alignment
    # and then fails on some utterances ("Failed to stop utterance processing"). It costs ~0.3 s.
    from pocketsphinx import Decoder

    return Decoder(samprate=EVAL_SR, loglevel="FATAL")


def phone_alignment(audio: np.ndarray, text: str) -> list[tuple[str, float, float]]:
    """``[(phone, start_s, end_s), ...]`` of ``text`` force-aligned to 16 kHz ``audio``.

    Raises:
        AlignmentError: a word is not in the PocketSphinx dictionary, or alignment failed.
    """
    dec = _aligner()
    words = normalize_text(text).split()
    if not words:
        raise AlignmentError("empty transcript")
    oov = [w for w in words if dec.lookup_word(w) is None]
    if oov:
        raise AlignmentError(f"not in the PocketSphinx dictionary: {' '.join(sorted(set(oov)))}")
    data = (np.clip(np.asarray(audio, np.float32), -1, 1) * 32767).astype("<i2").tobytes()
    try:
        dec.set_align_text(" ".join(words))
        dec.start_utt()
        dec.process_raw(data, full_utt=True)
        dec.end_utt()
        dec.set_alignment()
        dec.start_utt()
        dec.process_raw(data, full_utt=True)
        dec.end_utt()
        alignment = dec.get_alignment()
    except RuntimeError as exc:
        raise AlignmentError(f"alignment failed ({exc})") from None
    if alignment is None:
        raise AlignmentError("alignment failed (no path through the audio)")
    out = []
    for phone in alignment.phones():
        start = phone.start / PS_FRAME_RATE
        out.append((phone.name, start, start + phone.duration / PS_FRAME_RATE))
    if not out:
        raise AlignmentError("alignment failed (no phones)")
    return out


def frame_labels(segments: Sequence[tuple[str, float, float]], num_frames: int, frame_rate: float) -> list[str | None]:
    """The phone under the centre of each of ``num_frames`` codec frames (None past the end)."""
    labels: list[str | None] = [None] * num_frames
    j = 0
    for i in range(num_frames):
        t = (i + 0.5) / frame_rate
        while j < len(segments) and segments[j][2] <= t:
            j += 1
        if j < len(segments) and segments[j][1] <= t < segments[j][2]:
            labels[i] = segments[j][0]
    return labels


def _entropy(counts: Iterable[int]) -> float:
    c = np.asarray(list(counts), dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def pnmi_purity(phones: Sequence[str], codes: Sequence[int]) -> dict:
    """PNMI and phone purity of ``codes`` against ``phones`` (paired frame by frame)."""
    if len(phones) != len(codes):
        raise ValueError("phones and codes must pair up frame by frame")
    n = len(phones)
    if n == 0:
        return {"pnmi": math.nan, "purity": math.nan, "frames": 0, "phones": 0, "codes_used": 0}
    joint = Counter(zip(codes, phones))
    h_phone = _entropy(Counter(phones).values())
    # H(phone | code) = sum_c p(c) H(phone | c)
    by_code: dict[int, list[int]] = {}
    for (c, _), k in joint.items():
        by_code.setdefault(c, []).append(k)
    h_cond = sum(sum(ks) / n * _entropy(ks) for ks in by_code.values())
    purity = sum(max(ks) for ks in by_code.values()) / n
    pnmi = (h_phone - h_cond) / h_phone if h_phone > 0 else math.nan
    return {"pnmi": float(pnmi), "purity": float(purity), "frames": n,
            "phones": len(set(phones)), "codes_used": len(by_code)}


def codebook_probe(items: Sequence[tuple[np.ndarray, list[str | None]]], seed: int = 0) -> list[dict]:
    """Per-codebook PNMI/purity over a set.

    Args:
        items: per utterance, ``(codes [n_q, frames], frame phone labels)``.

    Returns:
        one dict per codebook (``codebook`` is 1-based), with ``*_shuffled`` chance levels.
    """
    if not items:
        return []
    n_q = min(int(c.shape[0]) for c, _ in items)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_q):
        phones, codes = [], []
        for c, labels in items:
            row = np.asarray(c[k]).tolist()
            for code, lab in zip(row, labels):
                if lab is not None and lab not in SILENCE:
                    phones.append(lab)
                    codes.append(int(code))
        res = pnmi_purity(phones, codes)
        shuffled = pnmi_purity(phones, list(rng.permutation(codes))) if codes else res
        rows.append({"codebook": k + 1, **res,
                     "pnmi_shuffled": shuffled["pnmi"], "purity_shuffled": shuffled["purity"]})
    return rows
