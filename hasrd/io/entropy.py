"""Entropy-coded token payloads: static per-codebook tables and a range coder.

A model's codes are not uniformly distributed: some codebook entries are used far more than
others, and a code often repeats from one frame to the next (a sound that lasts several frames).
The bit-packed ``.hsrd`` payload spends ``ceil(log2 K)`` bits on every code regardless; an
entropy-coded payload (token format version 2, ``docs/token_files.md``) spends about
``-log2 p(code)`` bits, with ``p`` from tables fitted once on a corpus and stored with the model
(``entropy.json`` beside ``config.json`` and ``model.safetensors``).

The model of codebook ``i`` (coding ``range1``):

* a *symbol table*: the counts of each of the ``K_i`` entries on the fitting corpus, plus
  ``smoothing`` for every entry, so that any code stays encodable (a code never seen while
  fitting costs about ``log2(total / smoothing)`` bits, not an error);
* optionally a *repeat flag*: for frames ``t >= 1`` a binary flag "same code as frame ``t - 1``"
  with a fitted probability; only the codes that do not repeat are coded with the symbol table
  (fitted on those codes). The fit turns the flag on for a codebook only where it lowers the cost
  on the fitting corpus.

The arithmetic coding itself is ``constriction``'s range coder (``RangeEncoder`` / ``RangeDecoder``
with ``Categorical(perfect=False)`` models: 24-bit fixed point, every entry at least the smallest
representable probability); nothing here is a hand-written coder.

Decoding is defensive, like the bit-packed reader: the payload is checked to be whole 32-bit
words; the number of codes the header declares is checked against the payload size with a bound
derived from the tables (no code can cost less than ``-log2`` of its table's largest probability)
*before* anything is allocated; any fault of the range decoder is a :class:`TokenFileError`;
and the decoded codes must re-encode to exactly the stored payload (one payload per codes) and
match the header's checksum of the codes (``cc``), so tables that differ in any way from the
writer's, or a coder that changed, can never silently give wrong codes.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .atomic import atomic_write_bytes
from .header import MAX_CODEBOOK_SIZE, MAX_N_Q, TokenFileError

TABLES_NAME = "entropy.json"
TABLES_FORMAT = "hasrd-entropy"
TABLES_FORMAT_VERSION = 1
CODING = "range1"  # the token header's "pc" for payloads written by this module
KNOWN_CODINGS = (CODING,)
DEFAULT_SMOOTHING = 0.5
# The repeat flag's probability is kept in [MIN_REPEAT, MAX_REPEAT]: even a long run of repeats
# then costs at least -log2(MAX_REPEAT) = 0.074 bits a frame, which bounds how many codes a
# payload of a given size can declare (see _min_bits).
MIN_REPEAT = 1.0 / 256
MAX_REPEAT = 0.95
# Likewise no code's probability exceeds MAX_PROB (a codebook stuck on one entry): every code
# then costs at least -log2(0.95) = 0.074 bits, so a payload byte stands for at most ~108 codes.
MAX_PROB = 0.95
_PRECISION = 24  # constriction's default fixed-point precision for the range coder
_SLACK_BITS = 128  # range coder flush and rounding slack in the size bound
_MAX_TABLE_FILE = 64 << 20


def _constriction():
    try:
        import constriction
    except ImportError:  # pragma: no cover - a declared dependency
        raise TokenFileError("entropy-coded token files need the 'constriction' package (pip install constriction)") from None
    return constriction.stream


def codes_crc(codes: np.ndarray) -> int:
    """The ``cc`` header field: CRC32 of the codes as little-endian uint32, codebook-major."""
    return zlib.crc32(np.ascontiguousarray(codes, dtype="<u4").tobytes())


@dataclass
class EntropyTables:
    """Static per-codebook tables of one model (see the module doc).

    Attributes:
        codec, fingerprint: the model the tables were fitted for (``Codec.fingerprint()``).
        codebook_sizes: ``K_i`` of every codebook of the model.
        counts: per codebook, ``int64 [K_i]``: how often each entry was coded by the symbol table
            on the fitting corpus (all codes, or only the non-repeating ones when ``repeat`` is set).
        repeat: per codebook, ``None`` (no repeat flag) or ``(repeats, pairs)``: of ``pairs``
            consecutive frame pairs, ``repeats`` had the same code.
        smoothing: added to every count (> 0).
        info: free facts about the fit (files, frames, ...); not part of the digest.
    """

    codec: str
    fingerprint: str
    codebook_sizes: list[int]
    counts: list[np.ndarray]
    repeat: list[tuple[int, int] | None]
    smoothing: float = DEFAULT_SMOOTHING
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self._models: dict[int, tuple] = {}
        self._digest: str | None = None

    # ---- identity -------------------------------------------------------------------------
    def _coding_obj(self) -> dict:
        return {
            "coding": CODING,
            "codebook_sizes": [int(k) for k in self.codebook_sizes],
            "smoothing": float(self.smoothing),
            "counts": [[int(v) for v in c] for c in self.counts],
            "repeat": [None if r is None else [int(r[0]), int(r[1])] for r in self.repeat],
        }

    @property
    def digest(self) -> str:
        """16 hex digits hashing everything that determines the coded bits (the header's ``et``)."""
        if self._digest is None:
            text = json.dumps(self._coding_obj(), sort_keys=True, separators=(",", ":"))
            self._digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._digest

    # ---- the probability models -----------------------------------------------------------
    def probabilities(self, i: int) -> np.ndarray:
        """Smoothed symbol probabilities of codebook ``i`` (float64, sums to 1; none above MAX_PROB)."""
        c = self.counts[i].astype(np.float64) + float(self.smoothing)
        p = c / c.sum()
        top = int(np.argmax(p))
        if p[top] > MAX_PROB:  # give the excess to the others, in proportion
            p = p * ((1.0 - MAX_PROB) / (1.0 - p[top]))
            p[top] = MAX_PROB
        return p

    def repeat_probability(self, i: int) -> float | None:
        """Probability of the repeat flag of codebook ``i`` (None: the codebook has no flag)."""
        r = self.repeat[i]
        if r is None:
            return None
        p = (r[0] + 0.5) / (r[1] + 1.0)
        return min(max(p, MIN_REPEAT), MAX_REPEAT)

    def _model(self, i: int):
        """``(symbol model, flag model or None, min bits per code, min bits per extra frame)``."""
        if i not in self._models:
            stream = _constriction()
            probs = self.probabilities(i)
            sym = stream.model.Categorical(probs, perfect=False)
            # constriction's leaky quantization can move a probability by a few 2^-24 at most;
            # bound it generously from above so the derived bit costs are lower bounds
            K = len(probs)
            p_top = min(float(probs.max()) + 2.0 ** -20, 1.0 - (K - 1) * 2.0 ** -_PRECISION)
            min_sym = -math.log2(p_top)
            pr = self.repeat_probability(i)
            if pr is None:
                flag, min_frame = None, min_sym
            else:
                flag = stream.model.Categorical(np.array([1.0 - pr, pr]), perfect=False)
                rep = -math.log2(min(pr + 2.0 ** -20, 1.0 - 2.0 ** -_PRECISION))
                new = -math.log2(min(1.0 - pr + 2.0 ** -20, 1.0 - 2.0 ** -_PRECISION)) + min_sym
                min_frame = min(rep, new)
            self._models[i] = (sym, flag, min_sym, min_frame)
        return self._models[i]

    def expected_bits(self, i: int, codes: np.ndarray) -> float:
        """Ideal cost in bits of one row of codes of codebook ``i`` under these tables."""
        row = np.asarray(codes, dtype=np.int64)
        if row.size == 0:
            return 0.0
        logp = np.log2(self.probabilities(i))
        pr = self.repeat_probability(i)
        if pr is None:
            return float(-logp[row].sum())
        same = row[1:] == row[:-1]
        new = np.concatenate([row[:1], row[1:][~same]])
        return float(-logp[new].sum() - same.sum() * math.log2(pr) - (~same).sum() * math.log2(1 - pr))

    # ---- persistence ----------------------------------------------------------------------
    def to_json(self) -> dict:
        obj = {
            "format": TABLES_FORMAT,
            "format_version": TABLES_FORMAT_VERSION,
            "codec": self.codec,
            "fingerprint": self.fingerprint,
            "digest": self.digest,
            "codebook_sizes": [int(k) for k in self.codebook_sizes],
            "smoothing": float(self.smoothing),
            "tables": [
                {"counts": [int(v) for v in c], "repeat": None if r is None else [int(r[0]), int(r[1])]}
                for c, r in zip(self.counts, self.repeat)
            ],
            "info": self.info,
        }
        return obj

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tables as JSON (atomically); a folder gets ``entropy.json`` inside."""
        path = Path(path)
        if path.is_dir():
            path = path / TABLES_NAME
        atomic_write_bytes(path, (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode())
        return path

    @classmethod
    def from_json(cls, obj: Any, source: str = "entropy tables") -> "EntropyTables":
        def bad(why: str) -> TokenFileError:
            return TokenFileError(f"{source}: not valid hasrd entropy tables ({why})")

        if not isinstance(obj, dict) or obj.get("format") != TABLES_FORMAT:
            raise bad(f"format is not {TABLES_FORMAT!r}")
        if obj.get("format_version") != TABLES_FORMAT_VERSION:
            raise bad(f"format_version {obj.get('format_version')!r}; this hasrd reads {TABLES_FORMAT_VERSION}")
        for key in ("codec", "fingerprint"):
            if not isinstance(obj.get(key), str) or not obj[key]:
                raise bad(f"{key} must be a string")
        sizes = obj.get("codebook_sizes")
        if not isinstance(sizes, list) or not 1 <= len(sizes) <= MAX_N_Q or not all(
            _is_int(k) and 2 <= k <= MAX_CODEBOOK_SIZE for k in sizes
        ):
            raise bad("codebook_sizes")
        smoothing = obj.get("smoothing")
        if not isinstance(smoothing, (int, float)) or isinstance(smoothing, bool) or not (
            math.isfinite(smoothing) and 0 < smoothing <= 1e6
        ):
            raise bad("smoothing must be a positive number")
        tables = obj.get("tables")
        if not isinstance(tables, list) or len(tables) != len(sizes):
            raise bad(f"needs {len(sizes)} tables")
        counts, repeat = [], []
        for i, (t, k) in enumerate(zip(tables, sizes)):
            c = t.get("counts") if isinstance(t, dict) else None
            if not isinstance(c, list) or len(c) != k or not all(_is_int(v) and 0 <= v < 2 ** 53 for v in c):
                raise bad(f"codebook {i}: counts must be {k} non-negative integers")
            r = t.get("repeat")
            if r is not None and not (
                isinstance(r, list) and len(r) == 2 and all(_is_int(v) for v in r) and 0 <= r[0] <= r[1] < 2 ** 53
            ):
                raise bad(f"codebook {i}: repeat must be null or [repeats, pairs]")
            counts.append(np.asarray(c, dtype=np.int64))
            repeat.append(None if r is None else (int(r[0]), int(r[1])))
        info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
        tables_obj = cls(obj["codec"], obj["fingerprint"], list(sizes), counts, repeat, float(smoothing), info)
        if "digest" in obj and obj["digest"] != tables_obj.digest:
            raise bad(f"stored digest {obj['digest']!r} does not match the tables ({tables_obj.digest})")
        return tables_obj

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EntropyTables":
        """Read tables written by :meth:`save` (a folder means its ``entropy.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / TABLES_NAME
        try:
            with open(path, "rb") as fh:
                raw = fh.read(_MAX_TABLE_FILE + 1)
        except FileNotFoundError:
            raise TokenFileError(f"no entropy tables at {path} (fit them with hasrd entropy-fit)") from None
        except OSError as exc:
            raise TokenFileError(f"cannot read entropy tables {path}: {exc.strerror or exc}") from None
        if len(raw) > _MAX_TABLE_FILE:
            raise TokenFileError(f"{path}: entropy tables file too large")
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise TokenFileError(f"{path}: entropy tables are not valid JSON") from None
        return cls.from_json(obj, str(path))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_CACHE: dict[tuple, EntropyTables] = {}


def resolve_tables(tables: "EntropyTables | str | os.PathLike | None") -> EntropyTables | None:
    """``EntropyTables`` as given, or loaded from a model folder / table file (cached by mtime)."""
    if tables is None or isinstance(tables, EntropyTables):
        return tables
    path = Path(tables)
    if path.is_dir():
        path = path / TABLES_NAME
    try:
        st = path.stat()
    except OSError:
        raise TokenFileError(f"no entropy tables at {path} (fit them with hasrd entropy-fit)") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = EntropyTables.load(path)
    return _CACHE[key]


# ---------------------------------------------------------------------------------------------
# fitting


def fit_tables(
    codes: Iterable[Any],
    codec: Any,
    smoothing: float = DEFAULT_SMOOTHING,
    repeat: str | bool = "auto",
) -> EntropyTables:
    """Fit tables on ``codes`` (an iterable of ``[n, frames]`` integer arrays, ``n <= num_codebooks``).

    Args:
        codes: the codes of a corpus, one array per file (frame pairs never span two files).
        codec: the model (a :class:`~hasrd.codecs.Codec`), or a dict with ``codec``, ``fingerprint``
            and ``codebook_sizes`` (all of the model's codebooks).
        smoothing: pseudo-count added to every entry (> 0): every code stays encodable.
        repeat: ``"auto"`` (use a repeat flag for a codebook where it lowers the cost on ``codes``),
            ``True`` (always) or ``False`` (never).
    """
    if isinstance(codec, dict):
        name, fp, sizes = codec["codec"], codec["fingerprint"], [int(k) for k in codec["codebook_sizes"]]
    else:
        name, fp, sizes = codec.codec_name, codec.fingerprint(), [int(k) for k in codec.codebook_sizes]
    if not (isinstance(smoothing, (int, float)) and math.isfinite(smoothing) and 0 < smoothing <= 1e6):
        raise ValueError(f"smoothing must be a positive number, got {smoothing!r}")
    if repeat not in ("auto", True, False):
        raise ValueError(f"repeat must be 'auto', True or False, got {repeat!r}")
    N = len(sizes)
    all_counts = [np.zeros(k, np.int64) for k in sizes]
    new_counts = [np.zeros(k, np.int64) for k in sizes]
    reps = np.zeros(N, np.int64)
    pairs = np.zeros(N, np.int64)
    files = frames = 0
    for arr in codes:
        if hasattr(arr, "detach"):
            arr = arr.detach().cpu().numpy()
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[0] > N or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"codes must be integer arrays [n <= {N}, frames], got {arr.dtype} {arr.shape}")
        files += 1
        frames += arr.shape[1]
        for i, row in enumerate(arr.astype(np.int64, copy=False)):
            if row.size == 0:
                continue
            if row.min() < 0 or row.max() >= sizes[i]:
                raise ValueError(f"codebook {i}: codes outside 0..{sizes[i] - 1}")
            all_counts[i] += np.bincount(row, minlength=sizes[i])
            same = row[1:] == row[:-1]
            new_counts[i] += np.bincount(np.concatenate([row[:1], row[1:][~same]]), minlength=sizes[i])
            reps[i] += int(same.sum())
            pairs[i] += same.size
    counts, rep = [], []
    costs = {}
    for i in range(N):
        plain = EntropyTables(name, fp, [sizes[i]], [all_counts[i]], [None], smoothing)
        flagged = EntropyTables(name, fp, [sizes[i]], [new_counts[i]], [(int(reps[i]), int(pairs[i]))], smoothing)
        c_plain = _corpus_cost(plain, all_counts[i], None)
        c_flag = _corpus_cost(flagged, new_counts[i], (int(reps[i]), int(pairs[i])))
        use = bool(pairs[i]) and (repeat is True or (repeat == "auto" and c_flag < c_plain))
        counts.append(new_counts[i] if use else all_counts[i])
        rep.append((int(reps[i]), int(pairs[i])) if use else None)
        costs[i] = (c_flag if use else c_plain)
    total = sum(int(c.sum()) for c in all_counts)
    info = {
        "files": files,
        "frames": frames,
        "codes": total,
        "bits_per_code": [round(costs[i] / max(int(all_counts[i].sum()), 1), 4) for i in range(N)],
    }
    return EntropyTables(name, fp, sizes, counts, rep, float(smoothing), info)


def _corpus_cost(t: EntropyTables, counts: np.ndarray, rep: tuple[int, int] | None) -> float:
    """In-sample cost in bits of the corpus summarised by ``counts`` / ``rep`` under table ``t``."""
    cost = float(-(counts * np.log2(t.probabilities(0))).sum())
    if rep is not None and rep[1]:
        pr = t.repeat_probability(0)
        cost += -rep[0] * math.log2(pr) - (rep[1] - rep[0]) * math.log2(1 - pr)
    return cost


# ---------------------------------------------------------------------------------------------
# coding


def _check_fit(tables: EntropyTables, sizes: list[int]) -> None:
    have = tables.codebook_sizes[: len(sizes)]
    if len(sizes) > len(tables.codebook_sizes) or list(have) != list(sizes):
        raise TokenFileError(
            f"the entropy tables cover codebooks of sizes {tables.codebook_sizes}, the codes need {sizes}"
        )


def _encode_rows(codes: np.ndarray, tables: EntropyTables) -> np.ndarray:
    stream = _constriction()
    enc = stream.queue.RangeEncoder()
    for i, row in enumerate(codes):
        if row.size == 0:
            continue
        sym, flag, _, _ = tables._model(i)
        row = row.astype(np.int32)
        if flag is not None:
            same = row[1:] == row[:-1]
            if same.size:
                enc.encode(same.astype(np.int32), flag)
            row = np.concatenate([row[:1], row[1:][~same]])
        enc.encode(row, sym)
    return enc.get_compressed()


def encode_payload(codes: np.ndarray, meta: dict, tables: "EntropyTables | str | os.PathLike") -> tuple[bytes, dict]:
    """Entropy-code ``codes [n_q, frames]`` (already range-checked) with ``tables``.

    Returns ``(payload bytes, header fields {"pc", "et", "cc"})``. The tables must have been
    fitted for the model named in ``meta`` (its fingerprint) and cover the codebook sizes.
    """
    t = resolve_tables(tables)
    sizes = [int(k) for k in meta["codebook_sizes"]][: codes.shape[0]]
    _check_fit(t, sizes)
    if meta.get("fingerprint") != t.fingerprint:
        raise TokenFileError(
            f"the entropy tables were fitted for model {t.codec} {t.fingerprint}, "
            f"these codes are from {meta.get('codec')} {meta.get('fingerprint')}"
        )
    words = _encode_rows(codes, t)
    return words.astype("<u4").tobytes(), {"pc": CODING, "et": t.digest, "cc": codes_crc(codes)}


def _min_bits(tables: EntropyTables, n_q: int, frames: int) -> float:
    """A lower bound on the payload bits of any ``n_q x frames`` codes under ``tables``."""
    if frames == 0:
        return 0.0
    total = 0.0
    for i in range(n_q):
        _, _, min_sym, min_frame = tables._model(i)
        total += min_sym + (frames - 1) * min_frame
    return total


def decode_payload(payload: bytes | memoryview, meta: dict, tables: "EntropyTables | str | os.PathLike | None") -> np.ndarray:
    """Codes ``int64 [n_q, frames]`` of an entropy-coded payload; any fault -> TokenFileError."""
    coding, digest = meta.get("payload_coding"), meta.get("entropy_table")
    if coding not in KNOWN_CODINGS:
        raise TokenFileError(f"payload coding {coding!r} is not one this hasrd reads ({', '.join(KNOWN_CODINGS)})")
    if tables is None:
        raise TokenFileError(
            f"entropy-coded file (tables {digest}): decoding needs the entropy tables of model "
            f"{meta.get('codec')} {meta.get('fingerprint')}; pass tables= (the model folder or its "
            f"{TABLES_NAME}), or --model DIR to the CLI"
        )
    try:
        t = resolve_tables(tables)
    except TokenFileError as exc:
        raise TokenFileError(f"entropy-coded file (tables {digest}): {exc}") from None
    if not isinstance(digest, str) or len(digest) < 8 or t.digest[:len(digest)] != digest:  # version 3: a prefix
        raise TokenFileError(
            f"entropy-coded with tables {digest}, but the tables given are {t.digest} "
            f"(fitted for {t.codec} {t.fingerprint}); pass the tables of the model that wrote the file"
        )
    n_q, frames, sizes = meta["n_q"], meta["num_frames"], meta["codebook_sizes"]
    _check_fit(t, sizes)
    nbytes = len(payload)
    if nbytes % 4:
        raise TokenFileError(f"corrupted: an entropy-coded payload is whole 32-bit words, got {nbytes} bytes")
    # the size bound, before anything the size of the codes is allocated
    need = _min_bits(t, n_q, frames)
    if need > (8 * nbytes + _SLACK_BITS) * (1 + 1e-9):
        raise TokenFileError(
            f"truncated or corrupted: {n_q} x {frames} codes need at least {math.ceil(need / 8)} payload bytes "
            f"under these tables, the file has {nbytes}"
        )
    if frames and not nbytes:
        raise TokenFileError("truncated or corrupted: empty entropy-coded payload")
    stream = _constriction()
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    codes = np.zeros((n_q, frames), dtype=np.int64)
    try:
        dec = stream.queue.RangeDecoder(words)
        for i in range(n_q):
            if frames == 0:
                break
            sym, flag, _, _ = t._model(i)
            if flag is None:
                codes[i] = dec.decode(sym, frames)
                continue
            same = dec.decode(flag, frames - 1).astype(bool) if frames > 1 else np.zeros(0, bool)
            new = np.concatenate([[True], ~same])
            values = np.asarray(dec.decode(sym, int(new.sum())), dtype=np.int64)
            codes[i] = values[np.cumsum(new) - 1]  # a repeat takes the last newly coded value
    except TokenFileError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # constriction reports invalid data with assertion errors or panics
        raise TokenFileError(f"corrupted: the entropy-coded payload does not decode ({type(exc).__name__})") from None
    for i, size in enumerate(sizes):
        if frames and codes[i].max() >= size:  # a table covers exactly K_i entries; belt and braces
            raise TokenFileError(f"codebook {i}: decoded code out of range for codebook size {size}")
    if codes_crc(codes) != meta.get("codes_crc"):
        raise TokenFileError("entropy-coded payload decodes to codes that fail their checksum (cc): "
                             "the tables or the coder differ from the writer's")
    if _encode_rows(codes, t).astype("<u4").tobytes() != bytes(payload):
        raise TokenFileError("corrupted: the entropy-coded payload is not the canonical coding of its codes")
    return codes
