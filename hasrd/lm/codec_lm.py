"""A codec plus a token LM: input audio -> codec latent -> the LM's tokens of the output -> audio.

``CodecLM.save_pretrained(DIR)`` writes ``DIR/lm.json`` (the LM config, its settings, and the
codec it works in: how to load it, ``codec``, e.g. ``default`` or a folder's absolute path, and
that codec's ``codec_name`` and ``codec_fingerprint``) and ``DIR/model.safetensors`` (the LM and
its latent statistics). The codec is named, not copied; :func:`load_codec_lm` loads it and
refuses, in one line, a codec whose fingerprint is not the one the LM was trained on.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..codecs import Codec, TokenCodec, load_codec
from ..codecs.latent import CodecView
from ..enhance.features import level_gain
from .model import LAYOUT, TokenLM
from .tasks import QUERY_TASKS, REF_TASKS, SS_SLOTS, text_embedding, user_tasks

CONFIG_NAME = "lm.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "hasrd-token-lm"


class LMNetwork(nn.Module):
    """:class:`TokenLM` over per-dimension standardised codec latents (condition and ref); the
    statistics are buffers, so checkpoints and exports carry them."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.lm = TokenLM(config)
        self.register_buffer("z_mean", torch.zeros(self.lm.cond_dim))
        self.register_buffer("z_std", torch.ones(self.lm.cond_dim))

    @property
    def config(self) -> dict[str, Any]:
        return self.lm.config

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.z_mean.copy_(mean)
        self.z_std.copy_(std)

    def normalise(self, z: torch.Tensor | None) -> torch.Tensor | None:
        return None if z is None else (z - self.z_mean) / self.z_std

    def forward(self, task_ids, cond, targets, cond_mask=None, ref=None, ref_mask=None, text=None, target_lengths=None):
        return self.lm(task_ids, self.normalise(cond), targets, cond_mask=cond_mask, ref=self.normalise(ref),
                       text=text, ref_mask=ref_mask, target_lengths=target_lengths)

    def generate(self, task_ids, cond, num_frames, ref=None, ref_mask=None, text=None, **kw) -> torch.Tensor:
        return self.lm.generate(task_ids, self.normalise(cond), num_frames, ref=self.normalise(ref), ref_mask=ref_mask,
                                text=text, **kw)


def lm_view(codec: Codec) -> CodecView:
    """The :class:`CodecView` the LM reads (latent before quantization, codes), for a token codec
    (hasrd or the dual-stream hcodec); a one-line ValueError for any other."""
    if not isinstance(codec, TokenCodec):
        raise ValueError(f"the token LM needs a token codec (hasrd or hcodec), not {codec.codec_name!r} (continuous)")
    return CodecView(codec)


class CodecLM(nn.Module):
    """The codec (frozen) and an :class:`LMNetwork` trained on its first ``n_q`` codebooks.

    ``settings``: ``codec`` (how :func:`hasrd.codecs.load_codec` finds the codec), ``n_q``,
    ``ref_frames`` (frames of a ref clip the LM sees; training used random windows this long).
    """

    def __init__(self, codec: Codec, network: LMNetwork, settings: dict[str, Any]):
        super().__init__()
        self.codec, self.network = codec, network
        self.view = lm_view(codec)
        self.settings = {"ref_frames": 150, **settings}
        lm = network.lm
        if int(self.settings["n_q"]) != lm.K or not 1 <= lm.K <= codec.num_codebooks:
            raise ValueError(f"the LM predicts {lm.K} codebooks; n_q is {self.settings['n_q']} and the codec has "
                             f"{codec.num_codebooks}")
        if lm.cond_dim != self.view.latent_dim:
            raise ValueError(f"the LM reads {lm.cond_dim}-dim features; the codec's latent has {self.view.latent_dim}")

    @property
    def tasks(self) -> list[str]:
        """The tasks this LM was trained on (``se``, ``tse``, ``ss``, ``vc``, ``lass``)."""
        return user_tasks(self.network.lm.tasks)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def check_request(self, task: str, ref: bool, query: bool) -> None:
        """One-line ValueError unless this LM runs ``task`` with (``ref``, ``query``) given or not."""
        if task not in self.tasks:
            raise ValueError(f"this LM was not trained on --task {task}; it knows {', '.join(self.tasks)}")
        check_inputs(task, ref, query)

    @torch.inference_mode()
    def generate(self, task: str, wav: torch.Tensor, ref: torch.Tensor | None = None, query: str | None = None,
                 n_frames: int | None = None, chunk_frames: int | None = None, **sampling) -> list[torch.Tensor]:
        """``wav`` ``[1, 1, T]`` (and ``ref`` ``[1, 1, T']``) at :attr:`sample_rate` -> the output
        waveforms, ``[1, 1, n_frames * hop]`` each (two for ``ss``: ``ss1`` then ``ss2``): the codes
        of :meth:`generate_codes`, decoded by the codec, at the input's level."""
        codes, gain = self._generate(task, wav, ref, query, n_frames, chunk_frames, **sampling)
        return [self.codec.decode(c) / gain for c in codes]

    @torch.inference_mode()
    def generate_codes(self, task: str, wav: torch.Tensor, ref: torch.Tensor | None = None, query: str | None = None,
                       n_frames: int | None = None, chunk_frames: int | None = None, **sampling) -> list[torch.Tensor]:
        """``wav`` ``[1, 1, T]`` (and ``ref`` ``[1, 1, T']``) at :attr:`sample_rate` -> the output
        codes, ``[1, n_q, n_frames]`` each (two for ``ss``: ``ss1`` then ``ss2``).
        ``n_frames`` defaults to the input's frames (the LM has no end-of-sequence token).
        Generation runs in windows of ``chunk_frames`` frames (default: the ``chunk_frames``
        setting, the crop length the LM was trained on; none stored: one window), each
        conditioned on the same frames of the input, so a long input never takes the LM past the
        sequence lengths it was trained on; the windows' codes are joined and decoded at once.
        ``sampling``: :meth:`TokenLM.generate`'s ``temperature``, ``top_k``, ``top_p``, ``greedy``,
        ``seed`` (window ``i`` is drawn with ``seed + i``)."""
        return self._generate(task, wav, ref, query, n_frames, chunk_frames, **sampling)[0]

    def _generate(self, task, wav, ref, query, n_frames, chunk_frames, **sampling) -> tuple[list[torch.Tensor], float]:
        self.check_request(task, ref is not None, query is not None)
        if wav.dim() != 3 or wav.shape[:2] != (1, 1):
            raise ValueError(f"expected a waveform [1, 1, T], got {tuple(wav.shape)}")
        lm = self.network.lm
        gain = level_gain(wav)  # the level the features were made at; the input's level is given back
        cond = self.view.analyse(wav * gain)[0].transpose(1, 2)
        kw: dict[str, Any] = {}
        if lm.ref_dim:
            if ref is None:
                kw["ref"], kw["ref_mask"] = cond.new_zeros(1, 1, lm.ref_dim), torch.zeros(1, 1, dtype=torch.bool, device=cond.device)
            else:
                kw["ref"] = self.view.analyse(ref * level_gain(ref))[0].transpose(1, 2)[:, : int(self.settings["ref_frames"])]
        if lm.text_dim:
            vec = text_embedding(query, lm.text_dim) if query is not None else np.zeros(lm.text_dim, np.float32)
            kw["text"] = torch.from_numpy(vec)[None].to(cond.device)
        frames = int(n_frames or cond.shape[1])
        chunk = int(chunk_frames or self.settings.get("chunk_frames") or frames)
        if chunk < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk}")
        seed = sampling.pop("seed", None)
        outs = []
        for token in SS_SLOTS if task == "ss" else (task,):
            parts = []
            for i, start in enumerate(range(0, frames, chunk)):
                n = min(chunk, frames - start)
                # frame f of the output is conditioned on frame f of the input; past the input's end
                # (n_frames longer than it) the condition is masked out
                window = cond[:, start:start + n] if start < cond.shape[1] else cond.new_zeros(1, 1, cond.shape[2])
                mask = torch.full(window.shape[:2], start < cond.shape[1], dtype=torch.bool, device=cond.device)
                parts.append(self.network.generate([token], window, n, **kw, **sampling, cond_mask=mask,
                                                   seed=None if seed is None else int(seed) + i))
            outs.append(torch.cat(parts, dim=-1))
        return outs, gain

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from ..io.saved import save_model_folder

        payload = {"format": FORMAT, "tasks": self.tasks, "network": self.network.config, "settings": self.settings,
                   "codec": str(self.settings["codec"]), "codec_name": self.codec.codec_name,
                   "codec_fingerprint": self.codec.fingerprint()}
        return save_model_folder(directory, CONFIG_NAME, payload, self.network.state_dict(), {"kind": FORMAT})


def check_inputs(task: str, ref: bool, query: bool) -> None:
    """One-line ValueError when ``task`` lacks a ref or query it needs, or gets one it takes none of."""
    if task in REF_TASKS and not ref:
        raise ValueError(f"--task {task} needs --ref REF.wav (a clip of the voice to {'keep' if task == 'tse' else 'speak in'})")
    if task not in REF_TASKS and ref:
        raise ValueError(f"--task {task} takes no --ref (only {', '.join(REF_TASKS)} do)")
    if task in QUERY_TASKS and not query:
        raise ValueError(f"--task {task} needs --query TEXT naming the source to keep (e.g. 'keep the speech')")
    if task not in QUERY_TASKS and query:
        raise ValueError(f"--task {task} takes no --query (only {', '.join(QUERY_TASKS)} does)")


def codec_spec(spec: str | os.PathLike) -> str:
    """How an export names its codec: a folder's absolute path, else the name as given (built-in, hub id)."""
    p = Path(str(spec))
    return str(p.resolve()) if p.is_dir() else str(spec)


def load_codec_lm(directory: str | os.PathLike, map_location: str = "cpu") -> CodecLM:
    """A :class:`CodecLM` from a :meth:`CodecLM.save_pretrained` folder (eval mode)."""
    from ..io.saved import read_model_config, read_weights

    directory = Path(directory)
    payload = read_model_config(directory, CONFIG_NAME, "a token-LM folder")
    if payload["network"].get("layout") != LAYOUT:
        raise ValueError(f"{directory}: a token LM of the condition-prefix layout (before the frame-aligned "
                         "condition); retrain it with this version")
    codec = load_codec(payload["codec"], map_location=map_location)
    if codec.fingerprint() != payload["codec_fingerprint"]:
        raise ValueError(f"{directory}: the codec it names ({payload['codec']}) has fingerprint {codec.fingerprint()}, "
                         f"but this LM was trained on the tokens of {payload.get('codec_name')} {payload['codec_fingerprint']}")
    network = LMNetwork(payload["network"])
    network.load_state_dict(read_weights(directory, map_location))
    lm = CodecLM(codec, network, payload["settings"])
    lm.eval()
    return lm
