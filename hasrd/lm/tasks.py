"""The tasks of the token LM, what each one takes, and the fixed embedding of a text query.

No torch here (the ``hasrd generate`` parser imports this module).

Tasks (recipe, training and ``hasrd generate`` names):

=======  ===================================================  ==========  ==============
task     input -> output                                      ``--ref``   ``--query``
=======  ===================================================  ==========  ==============
se       noisy speech -> the clean speech                     no          no
tse      two-voice mixture -> the voice of the enrollment     yes         no
ss       two-voice mixture -> both voices (two outputs)       no          no
vc       an utterance -> the same words in the ref's voice    yes         no
lass     speech + a sound -> the source the query names      no          yes
=======  ===================================================  ==========  ==============

Source separation has two outputs; the LM has one output stream, so ``ss`` is two *model* tasks
with their own task tokens, ``ss1`` (the louder source of the mixture, the recipe's ``target``)
and ``ss2`` (the other, ``target2``): a training mixture gives one example of each, and
``generate --task ss`` runs the LM twice. Task tokens need no change to :class:`TokenLM` and keep
the two outputs apart by a rule the model can see (the level), instead of an arbitrary order.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

TASKS = ("se", "tse", "ss", "vc", "lass")
REF_TASKS = ("tse", "vc")
QUERY_TASKS = ("lass",)
SS_SLOTS = ("ss1", "ss2")
#: default size of the text-query vector (:func:`text_embedding`)
TEXT_DIM = 64


def model_tasks(tasks: Iterable[str]) -> list[str]:
    """Task names -> the LM's task tokens, in :data:`TASKS` order (``ss`` becomes ``ss1``, ``ss2``)."""
    tasks = set(tasks)
    bad = sorted(tasks - set(TASKS))
    if bad:
        raise ValueError(f"unknown task(s) {bad}; known: {', '.join(TASKS)}")
    out: list[str] = []
    for t in TASKS:
        if t in tasks:
            out += list(SS_SLOTS) if t == "ss" else [t]
    return out


def user_tasks(tokens: Iterable[str]) -> list[str]:
    """The LM's task tokens -> the tasks it can run (``ss`` needs both ``ss1`` and ``ss2``)."""
    tokens = set(tokens)
    return [t for t in TASKS if (set(SS_SLOTS) <= tokens if t == "ss" else t in tokens)]


def text_embedding(text: str, dim: int = TEXT_DIM, n: int = 3) -> np.ndarray:
    """A fixed vector ``[dim]`` (float32, unit norm) for a text query: a signed, hashed bag of the
    character ``n``-grams of the lower-cased, space-normalised text padded with one space each side.

    Fixed and deterministic (BLAKE2b, not Python's salted ``hash``), so a query means the same in
    every process and after a restart; no vocabulary, so any query can be embedded at generation
    time (queries sharing words share n-grams and land near each other), and nothing but the LM's
    ``Linear(text_dim, d_model)`` is learned on top. The empty query is the zero vector.
    """
    if dim < 1:
        raise ValueError(f"text embedding dim must be >= 1, got {dim}")
    s = " " + " ".join(str(text).lower().split()) + " "
    v = np.zeros(dim, np.float64)
    if s.strip():
        for i in range(len(s) - n + 1):
            h = int.from_bytes(hashlib.blake2b(s[i:i + n].encode(), digest_size=8).digest(), "little")
            v[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)
