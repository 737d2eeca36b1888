"""Transcript normalisation and edit-distance error rates (WER, CER).

Both the reference text and the recogniser's output go through :func:`normalize_text` before
they are compared, so that casing, punctuation and digit spelling never count as errors.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]


def number_to_words(n: int) -> str:
    """English cardinal words for a non-negative integer (``1905`` -> ``one thousand nine hundred five``)."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, rest = divmod(n, 10)
        return _TENS[tens] + ("" if rest == 0 else " " + _ONES[rest])
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            words = number_to_words(head) + " " + name
            return words if rest == 0 else words + " " + number_to_words(rest)
    raise AssertionError("unreachable")  # pragma: no cover


def _digits_to_words(match: re.Match) -> str:
    text = match.group(0).replace(",", "")
    if len(text) > 12:  # a long digit string (a phone number, an id): read digit by digit
        return " ".join(_ONES[int(c)] for c in text)
    return " " + number_to_words(int(text)) + " "


def normalize_text(text: str | None) -> str:
    """Lower-case words separated by single spaces, for scoring.

    Steps: Unicode NFKC; lower case; recogniser markup (``<s>``, ``[noise]``, ``(2)``) removed;
    digits spelt out as English cardinals (``42`` -> ``forty two``, ``1,000`` -> ``one
    thousand``); hyphens and every other punctuation mark become spaces, except an apostrophe
    inside a word (``it's`` stays); runs of spaces collapse to one.
    """
    if not text:
        return ""
    s = unicodedata.normalize("NFKC", text).lower()
    s = s.replace("\u2019", "'").replace("\u2018", "'")
    s = re.sub(r"<[^>]*>|\[[^\]]*\]|\(\d+\)", " ", s)
    s = re.sub(r"\d[\d,]*", _digits_to_words, s)
    s = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", s)  # quotes, not apostrophes
    s = re.sub(r"[^a-z0-9' ]+", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, deletions and insertions each cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class ErrorCounts:
    """Edits and reference length for one utterance; add them up over a corpus."""

    word_edits: int
    ref_words: int
    char_edits: int
    ref_chars: int

    @property
    def wer(self) -> float:
        return _rate(self.word_edits, self.ref_words)

    @property
    def cer(self) -> float:
        return _rate(self.char_edits, self.ref_chars)


def _rate(edits: int, total: int) -> float:
    if total == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / total


def error_counts(reference: str, hypothesis: str) -> ErrorCounts:
    """Word and character edit counts after :func:`normalize_text` on both sides.

    CER compares the normalised strings character by character, their single spaces included.
    """
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    ref_w, hyp_w = ref.split(), hyp.split()
    return ErrorCounts(
        word_edits=edit_distance(ref_w, hyp_w), ref_words=len(ref_w),
        char_edits=edit_distance(ref, hyp), ref_chars=len(ref),
    )


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one utterance (edits / reference words), after normalisation."""
    return error_counts(reference, hypothesis).wer


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of one utterance, after normalisation."""
    return error_counts(reference, hypothesis).cer
