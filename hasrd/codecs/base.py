"""The one codec interface every hasrd variant implements.

The CLI, the token file format, the trainer and the evaluator talk to a codec only through this
class, so a new variant needs no special case anywhere else.

Code layout: ``codes`` are ``LongTensor[B, n_q, frames]``; codebooks are ordered so that the first
``num_semantic_codebooks`` are the semantic ones, and asking for ``n_q`` codebooks always means
"the first ``n_q``" (a prefix). Lower ``n_q`` is a lower bitrate from the same model.
"""
from __future__ import annotations

import abc
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_REGISTRY: dict[str, type["Codec"]] = {}


def register_codec(name: str):
    """Class decorator: make a codec class buildable from a config whose ``name`` is ``name``."""

    def wrap(cls):
        cls.codec_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def codec_class(name: str) -> type["Codec"]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown codec name {name!r}; known: {sorted(_REGISTRY)}") from None


def bitrate(frame_rate: float, codebook_sizes: list[int], n_q: int) -> float:
    """Nominal bitrate in bits/s of the first ``n_q`` codebooks: ``frame_rate * sum(log2 K_i)``.

    This is the only place hasrd computes a bitrate; the CLI, token headers and the evaluator
    all come here through :meth:`Codec.bitrate`.
    """
    if not 1 <= n_q <= len(codebook_sizes):
        raise ValueError(f"n_q must be in 1..{len(codebook_sizes)}, got {n_q}")
    return float(frame_rate) * sum(math.log2(k) for k in codebook_sizes[:n_q])


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _storage_tensor(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` cast to ``dtype`` for storage, unless it is not floating point or some finite value
    would overflow."""
    if not t.is_floating_point() or t.dtype == dtype:
        return t
    cast = t.to(dtype)
    return cast if torch.equal(torch.isfinite(cast), torch.isfinite(t)) else t


@dataclass
class CodecOutput:
    """What a codec's training forward returns.

    Attributes:
        audio: reconstructed waveform ``[B, 1, T]`` (same length as the input), or None when the
            model decodes no waveform in this training stage (a continuous codec's stage 1).
        codes: ``[B, num_codebooks, frames]`` (all codebooks, before any dropout mask; a
            continuous codec gives ``[B, 0, frames]``).
        n_q: ``LongTensor[B]``, how many codebooks each item was decoded with.
        losses: named loss terms computed inside the model (``vq``, ...).
        metrics: named scalars to log (per-codebook usage/perplexity, ...).
        semantic: the model's semantic predictions that distillation losses compare with a
            teacher: ``{"features": [B, frames, D_teacher], "unit_logits": [B, frames, n_units]}``
            (a continuous codec in stage 2 adds ``"anchor_features"``, its frozen stage-1 head's).
        latent: the continuous latent ``[B, D, frames]`` of a continuous codec, else None.
        pitch: a pitch-rendering decoder's predictions (``source: harmonic``), which the trainer
            compares with pitch targets of the input: ``{"f0": [B, frames] Hz,
            "voiced_logit": [B, frames]}``; empty otherwise.
    """

    audio: torch.Tensor | None
    codes: torch.Tensor
    n_q: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    semantic: dict[str, torch.Tensor] = field(default_factory=dict)
    latent: torch.Tensor | None = None
    pitch: dict[str, torch.Tensor] = field(default_factory=dict)


class Codec(nn.Module, abc.ABC):
    """Abstract speech codec: waveform in, integer codes out, and back."""

    codec_name: ClassVar[str] = "abstract"
    #: True for codecs whose bottleneck is a continuous latent, not codes: they implement
    #: ``encode_latent(wav) -> [B, D, F]``, ``decode_latent(z)``, ``latent_dim`` and
    #: ``latent_bitrate(bits)``, and their token members raise TypeError. The CLI and the
    #: evaluator branch on this attribute only.
    continuous: ClassVar[bool] = False
    supports_causal: ClassVar[bool] = False  # may this variant be built with ``causal: true``

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = json.loads(json.dumps(config))  # a plain, JSON-safe copy
        self._fingerprint: str | None = None
        self._inference_only = False  # set by prepare_for_inference
        if self.config.get("causal") and not self.supports_causal:
            raise ValueError(f"codec {self.codec_name!r} has no causal variant (model.causal)")

    # ---- static description -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abc.abstractmethod
    def hop_length(self) -> int:
        """Waveform samples per code frame."""

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    @abc.abstractmethod
    def codebook_sizes(self) -> list[int]: ...

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    @abc.abstractmethod
    def num_semantic_codebooks(self) -> int: ...

    def bitrate(self, n_q: int | None = None) -> float:
        return bitrate(self.frame_rate, self.codebook_sizes, self.num_codebooks if n_q is None else n_q)

    def n_q_for_bitrate(self, bps: float) -> int:
        """The largest ``n_q`` whose nominal bitrate does not exceed ``bps``."""
        best = None
        for n in range(1, self.num_codebooks + 1):
            if self.bitrate(n) <= bps + 1e-6:
                best = n
        if best is None:
            raise ValueError(
                f"{bps:g} bps is below this model's lowest bitrate ({self.bitrate(1):g} bps at n_q=1)"
            )
        return best

    def check_n_q(self, n_q: int | None) -> int:
        if n_q is None:
            return self.num_codebooks
        if not isinstance(n_q, int) or not 1 <= n_q <= self.num_codebooks:
            raise ValueError(f"n_q must be an integer in 1..{self.num_codebooks}, got {n_q!r}")
        return n_q

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    def pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad ``[B, 1, T]`` with zeros to a whole number of frames."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected waveform [B, 1, T], got {tuple(wav.shape)}")
        pad = self.num_frames(wav.shape[-1]) * self.hop_length - wav.shape[-1]
        return nn.functional.pad(wav, (0, pad)) if pad else wav

    # ---- the work -------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """``[B, 1, T]`` at :attr:`sample_rate` -> ``LongTensor[B, n_q, ceil(T / hop_length)]``."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``LongTensor[B, n_q, F]`` (any ``1 <= n_q <= num_codebooks``) -> ``[B, 1, F * hop_length]``."""

    @abc.abstractmethod
    def forward(self, wav: torch.Tensor, n_q: torch.Tensor | int | None = None) -> CodecOutput:
        """Training/analysis pass; ``n_q`` may be a per-item ``LongTensor[B]``.

        In training mode the model draws per-item ``n_q`` itself (quantizer dropout) when ``n_q``
        is None. In eval mode ``forward(x, n).audio`` equals ``decode(encode(x, n))``.
        """

    # ---- streaming (see docs/streaming.md and hasrd/streaming.py) ------------------------------
    @property
    def causal(self) -> bool:
        """Built with ``model.causal: true``: output up to sample ``t`` needs input up to ``t``'s frame only."""
        return bool(self.config.get("causal", False))

    @property
    def lookahead_samples(self) -> int | None:
        """Input samples past the end of a frame that its codes and audio depend on.

        0 for a causal codec; ``None`` for an offline one (its convolutions look ahead by their
        receptive field, and an SSL encoder attends over the whole input).
        """
        return 0 if self.causal else None

    def algorithmic_latency(self) -> float:
        """Seconds between a sample entering :meth:`stream_encoder` and the same sample leaving
        :meth:`stream_decoder`, compute time aside: one frame hop plus the lookahead
        (``math.inf`` for a codec that cannot stream)."""
        if self.lookahead_samples is None:
            return math.inf
        return (self.hop_length + self.lookahead_samples) / self.sample_rate

    def stream_encoder(self, n_q: int | None = None):
        """A :class:`hasrd.streaming.StreamEncoder`: ``push(audio chunk)`` -> codes of the whole
        frames completed so far, ``flush()`` -> the last, zero-padded frame."""
        from ..streaming import StreamEncoder

        return StreamEncoder(self, n_q)

    def stream_decoder(self):
        """A :class:`hasrd.streaming.StreamDecoder`: ``push(codes[B, n_q, f])`` -> ``[B, 1, f * hop]``."""
        from ..streaming import StreamDecoder

        return StreamDecoder(self)

    def _stream_encode_step(self, wav: torch.Tensor, n_q: int, state: Any):
        """``(codes [B, n_q, f] or None, state)`` for the next audio piece (causal codecs implement it)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def _stream_decode_step(self, codes: torch.Tensor, state: Any):
        """``(audio [B, 1, f * hop], state)`` for the next ``f`` frames (causal codecs implement it)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    # ---- inference speed-ups ------------------------------------------------------------------
    def prepare_for_inference(self) -> "Codec":
        """Eval mode, no gradients, weight norm folded into plain weights and the Snake
        activations rewritten with fewer passes (:mod:`hasrd.nn.inference`; outputs unchanged up to
        float rounding, less work per call: codes equal but for float near-ties between two codebook
        entries). Irreversible: the model can no longer be trained or saved (save it before);
        :meth:`fingerprint` keeps the value of the unfolded model."""
        from ..nn import remove_weight_norm
        from ..nn.inference import replace_snakes

        if self._inference_only:
            return self
        self.eval()
        fingerprint = self.fingerprint()
        remove_weight_norm(self)
        replace_snakes(self)  # encoder and decoder
        for p in self.parameters():
            p.requires_grad_(False)
        self._fingerprint, self._inference_only = fingerprint, True
        return self

    def _run_decoder(self, z: torch.Tensor) -> torch.Tensor:
        """``self.decoder(z)``; for a codec prepared for inference, on the CPU, through a frozen
        TorchScript trace of the decoder (made at the first call and kept: the same convolutions,
        with oneDNN weight layouts and folded constants; outputs unchanged, about a sixth faster).
        If tracing fails the plain decoder runs."""
        decoder = self.decoder
        if not self._inference_only or z.device.type != "cpu":
            return decoder(z)
        traced = self.__dict__.get("_traced_decoder")  # kept out of the module tree and state_dict
        if traced is None:
            try:
                # the decoder's Python branches depend on shapes only through conv arithmetic that
                # is the same for every length (tested for other batch sizes and lengths)
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    traced = torch.jit.optimize_for_inference(torch.jit.freeze(
                        torch.jit.trace(decoder, z, check_trace=False).eval()))
            except Exception:  # an op TorchScript cannot trace: keep the eager decoder
                traced = False
            self.__dict__["_traced_decoder"] = traced
        return traced(z) if traced is not False else decoder(z)

    # ---- identity and persistence -----------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of the exact model (config and weights): token files carry it."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.config, sort_keys=True).encode())
            for key, tensor in sorted(self.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def train(self, mode: bool = True):
        if self._inference_only:
            if mode:
                raise RuntimeError("this codec was prepared for inference (weight norm folded); it cannot train")
            return super().train(False)  # weights are frozen: keep the fingerprint
        self._fingerprint = None  # weights may change while training
        return super().train(mode)

    def describe(self) -> dict[str, Any]:
        """The static facts about this codec, as JSON-safe values (for ``hasrd info`` and docs)."""
        return {
            "codec": self.codec_name,
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "hop_length": self.hop_length,
            "num_codebooks": self.num_codebooks,
            "num_semantic_codebooks": self.num_semantic_codebooks,
            "codebook_sizes": list(self.codebook_sizes),
            "bitrates": {n: self.bitrate(n) for n in range(1, self.num_codebooks + 1)},
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights saved by :meth:`save_pretrained` (subclasses may drop training-only parts)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    def save_pretrained(self, directory: str | os.PathLike, dtype: str = "float32", results: str | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` into
        ``directory`` (atomically each): the layout of a Hugging Face hub model repository.

        ``dtype``: how floating-point weights are stored, one of :data:`STORAGE_DTYPES`.
        ``float16`` halves the file; :meth:`from_pretrained` loads it back into a float32 model.
        A tensor whose values do not fit the storage type (e.g. a large running count) stays
        float32. Integer and boolean buffers are stored as they are.

        The card has the hub's YAML front matter (``library_name: hasrd``, tags ``audio``,
        ``speech``, ``codec``) and a description generated from :meth:`describe`; ``results``
        (markdown, e.g. a measured table) is added under "Results". A ``README.md`` already in
        ``directory`` that hasrd did not write is kept as it is.
        """
        from safetensors.torch import save_file

        from ..io.atomic import atomic_write

        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"dtype {dtype!r}: use one of {list(STORAGE_DTYPES)}")
        if self._inference_only:
            raise RuntimeError("a codec prepared for inference has folded weights that a fresh model "
                               "cannot load; save it before calling prepare_for_inference()")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.inference_state_dict()
        # safetensors refuses tensors that share memory: clone so each is its own.
        state = {k: _storage_tensor(v.clone(), STORAGE_DTYPES[dtype]) for k, v in state.items()}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"codec": self.codec_name,
                                                                                            "dtype": dtype}))
        payload = {"codec": self.codec_name, "model": self.config}
        atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(payload, indent=2) + "\n"))
        self.write_model_card(directory, results=results)
        return directory

    def write_model_card(self, directory: str | os.PathLike, repo_id: str | None = None, results: str | None = None) -> bool:
        """(Re)write ``directory/README.md``, the model card (see :meth:`save_pretrained`); False
        when a README.md that hasrd did not write is there and was kept."""
        from ..hub import codec_card, write_card

        return write_card(directory, codec_card(self.describe(), repo_id=repo_id, results=results))

    def push_to_hub(self, repo_id: str, *, dtype: str = "float32", results: str | None = None, private: bool | None = None,
                    token: str | None = None, revision: str | None = None, commit_message: str | None = None,
                    create_repo: bool = True):
        """Upload this codec to the Hugging Face hub as ``repo_id`` (``org/name``): the folder
        :meth:`save_pretrained` writes (card naming ``repo_id``), saved to a temporary folder and
        sent with ``huggingface_hub.HfApi().upload_folder`` (the repository is created first unless
        ``create_repo=False``). Needs the network and a token (``hf auth login`` or ``token=``).
        Returns ``upload_folder``'s commit info. ``load_codec(repo_id)`` reads it back."""
        from ..hub import push_folder

        return push_folder(lambda d: self.save_pretrained(d, dtype=dtype, results=results), repo_id,
                           card=lambda d, rid: self.write_model_card(d, repo_id=rid, results=results),
                           private=private, token=token, revision=revision, commit_message=commit_message,
                           create_repo=create_repo)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Codec":
        return cls(config)

    @staticmethod
    def from_pretrained(directory: str | os.PathLike, map_location: str = "cpu") -> "Codec":
        """Rebuild a codec from a :meth:`save_pretrained` folder alone, or from a hub id
        ``org/name`` (:func:`hasrd.hub.resolve_model_dir`: an existing local folder wins; a hub id is
        looked up in the local hub cache, downloaded only when online and ``HF_HUB_OFFLINE`` is unset)."""
        from safetensors.torch import load_file

        from ..hub import resolve_model_dir

        directory = resolve_model_dir(directory)
        cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not cfg_path.is_file() or not w_path.is_file():
            raise FileNotFoundError(f"{directory}: not a hasrd model folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        payload = json.loads(cfg_path.read_text())
        model_cfg = dict(payload["model"])
        # The stored config describes the full architecture: never fetch pretrained SSL weights
        # again, the safetensors file holds them.
        model_cfg = _strip_pretrained(model_cfg)
        model = codec_class(payload["codec"]).from_config(model_cfg)
        state = load_file(str(w_path), device=map_location)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not model.is_optional_weight(k)]
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.eval()
        return model

    def _freeze(self, names, parts: tuple[str, ...], always: tuple[str, ...] = ()) -> list[str]:
        """``model.freeze``: no gradients for the named parts (plus ``always``); unknown names are a
        ValueError naming ``parts``. Returns the frozen parts, sorted."""
        unknown = set(names) - set(parts)
        if unknown:
            raise ValueError(f"model.freeze names unknown parts {sorted(unknown)}; use {list(parts)}")
        frozen = sorted(set(names) | set(always))
        for name in frozen:
            getattr(self, name).requires_grad_(False)
        return frozen

    def is_optional_weight(self, key: str) -> bool:
        """Weights that :meth:`inference_state_dict` may leave out (training-only heads)."""
        return False

    def prepare_training(self, warm_start_keys: set[str] | None) -> str | None:
        """Called by the trainer once the starting weights are in place (not on a resume).

        ``warm_start_keys``: the weight names ``train.init_from`` loaded, or None without a warm
        start. Returns a line for the log, or None; raises ValueError if the model cannot start
        training from there. The default does nothing.
        """
        return None


def _strip_pretrained(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: (None if k == "pretrained" else _strip_pretrained(v)) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_strip_pretrained(v) for v in cfg]
    return cfg


