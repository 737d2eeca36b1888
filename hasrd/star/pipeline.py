"""The trained speech-to-audio model: a spoken prompt -> the sound it asks for.

An export folder (``RUN/export/``) holds ``star.json`` (the network config, the stage, the
semantic size, the classes and their descriptions, the speech encoder's spec and fingerprint,
the codec's spec, name and fingerprint, ``crop_frames``) and ``model.safetensors`` (the bridge,
in stage 2 also the generator, the null condition and the latent statistics). The speech encoder
and the codec are named, not copied; :func:`load_speak_to_audio` loads them and refuses, in one
line, one whose fingerprint is not the one the model was trained with.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import prototypes
from .encoders import SpeechEncoder
from .model import StarNetwork

CONFIG_NAME = "star.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "hasrd-star"
#: the longest audio ``generate`` makes (seconds); the CLI refuses more
MAX_SECONDS = 30.0


class StageOneError(ValueError):
    """``generate`` on a stage-1 export (the bridge only)."""


class SpeakToAudio(nn.Module):
    """Speech encoder (frozen) + bridge + flow generator + continuous codec (frozen)."""

    def __init__(self, encoder: SpeechEncoder, codec, network: StarNetwork, meta: dict[str, Any]):
        super().__init__()
        self.encoder, self.codec, self.network, self.meta = encoder, codec, network, meta
        self.classes = list(meta["classes"])
        self.register_buffer("protos", torch.from_numpy(prototypes(meta["classes"], network.semantic_dim)), persistent=False)

    @property
    def stage(self) -> int:
        return int(self.meta["stage"])

    @property
    def sample_rate(self) -> int:
        """The rate of the generated audio (the codec's)."""
        return int(self.codec.sample_rate) if self.codec is not None else int(self.encoder.sample_rate)

    def to(self, *args, **kw):
        super().to(*args, **kw)
        self.encoder.to(self.protos.device)
        return self

    def _wave(self, prompt, sr: int) -> torch.Tensor:
        from ..io.audio import resample

        x = prompt.detach().cpu().numpy() if isinstance(prompt, torch.Tensor) else np.asarray(prompt, np.float32)
        x = np.asarray(x, np.float32).reshape(-1)
        if x.size == 0:
            raise ValueError("empty prompt")
        if int(sr) != self.encoder.sample_rate:
            x = resample(x, int(sr), self.encoder.sample_rate)
        return torch.from_numpy(np.ascontiguousarray(x)).view(1, 1, -1).to(self.protos.device)

    @torch.inference_mode()
    def embed_prompt(self, prompt, sr: int) -> np.ndarray:
        """A spoken prompt (``[T]`` float audio at ``sr``) -> its unit vector ``[S]`` in the semantic space."""
        feats = self.encoder.features(self._wave(prompt, sr))
        limit = int(self.meta.get("prompt_frames") or feats.shape[0])
        return self.network("bridge", feats[None, :limit])[0].cpu().numpy()

    def classify_prompt(self, prompt, sr: int) -> str:
        """The class whose prototype (normalised mean of its descriptions' vectors) is nearest the prompt's vector."""
        v = torch.from_numpy(self.embed_prompt(prompt, sr)).to(self.protos.device)
        return self.classes[int((self.protos @ v).argmax())]

    def _check_generate(self, seconds: float, steps: int, guidance: float) -> int:
        if self.network.generator is None:
            raise StageOneError("this is a stage-1 STAR export (the bridge only): it embeds and classifies prompts "
                                "but cannot generate; train stage 2 with train.init_from=RUN1/export")
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
            raise ValueError(f"seconds must be > 0 and <= {MAX_SECONDS:g}, got {seconds}")
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not math.isfinite(float(guidance)):
            raise ValueError(f"guidance must be finite, got {guidance}")
        return int(round(seconds * self.sample_rate))

    @torch.inference_mode()
    def generate_from_vector(self, c: np.ndarray | torch.Tensor, seconds: float = 4.0, steps: int = 16, seed: int = 0,
                             guidance: float = 2.0) -> tuple[np.ndarray, int]:
        """A condition vector ``[S]`` -> ``(audio [T] float32, sample_rate)`` of ``seconds``."""
        n = self._check_generate(seconds, steps, guidance)
        hop = int(self.codec.hop_length)
        c = torch.as_tensor(np.asarray(c, np.float32)).view(1, -1).to(self.protos.device)
        z = self.network.sample(c, -(-n // hop), steps=int(steps), guidance=float(guidance), seed=seed)
        y = self.codec.decode_latent(z)[0, 0, :n]
        return y.float().cpu().numpy(), self.sample_rate

    def generate(self, prompt, sr: int, seconds: float = 4.0, steps: int = 16, seed: int = 0,
                 guidance: float = 2.0) -> tuple[np.ndarray, int]:
        """A spoken prompt (``[T]`` audio at ``sr``) -> ``(audio [T'] float32, sample_rate)``: the
        bridge's vector of the prompt conditions the flow generator (Euler ODE, ``steps`` steps,
        classifier-free ``guidance``, noise drawn from ``seed``); the codec decodes the latent."""
        self._check_generate(seconds, steps, guidance)
        return self.generate_from_vector(self.embed_prompt(prompt, sr), seconds, steps, seed, guidance)

    def generate_from_text(self, text: str, seconds: float = 4.0, steps: int = 16, seed: int = 0,
                           guidance: float = 2.0) -> tuple[np.ndarray, int]:
        """The same generator on ``text_embedding(text)`` (what a cascade with an ASR front end feeds it)."""
        from ..lm.tasks import text_embedding

        self._check_generate(seconds, steps, guidance)
        return self.generate_from_vector(text_embedding(text, self.network.semantic_dim), seconds, steps, seed, guidance)


def save_export(directory: str | os.PathLike, network: StarNetwork, meta: dict[str, Any]) -> Path:
    from ..io.saved import save_model_folder

    payload = {"format": FORMAT, **meta, "network": network.config}
    return save_model_folder(directory, CONFIG_NAME, payload, network.state_dict(), {"kind": FORMAT})


def read_export(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(star.json, weights)`` of an export; FileNotFoundError (one line) if it is not one."""
    from ..io.saved import read_model_config, read_weights

    directory = Path(directory)
    meta = read_model_config(directory, CONFIG_NAME, "a STAR export")
    if meta.get("format") != FORMAT:
        raise FileNotFoundError(f"{directory}: not a STAR export ({CONFIG_NAME} has no format {FORMAT!r})")
    return meta, read_weights(directory)


def load_speak_to_audio(directory: str | os.PathLike, map_location: str = "cpu") -> SpeakToAudio:
    """A :class:`SpeakToAudio` from an export folder (eval mode)."""
    from ..codecs import load_codec

    meta, state = read_export(directory)
    encoder = SpeechEncoder(meta["speech_encoder"], map_location=map_location)
    if encoder.fingerprint() != meta["speech_encoder_fingerprint"]:
        raise ValueError(f"{directory}: the speech encoder it names ({encoder.name}) has fingerprint {encoder.fingerprint()}, "
                         f"but this model was trained on {meta['speech_encoder_fingerprint']}")
    codec = None
    if meta.get("codec"):
        codec = load_codec(meta["codec"], map_location=map_location)
        if codec.fingerprint() != meta["codec_fingerprint"]:
            raise ValueError(f"{directory}: the codec it names ({meta['codec']}) has fingerprint {codec.fingerprint()}, "
                             f"but this model was trained on the latents of {meta.get('codec_name')} {meta['codec_fingerprint']}")
    network = StarNetwork(meta["network"])
    network.load_state_dict(state)
    model = SpeakToAudio(encoder, codec, network, meta)
    model.eval()
    return model
