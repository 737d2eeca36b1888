"""The frozen speech encoder that reads spoken prompts (``star.speech_encoder``).

- ``{type: codec, codec: NAME_OR_PATH}``: a hasrd token codec's latent before quantization
  (:class:`hasrd.codecs.CodecView`, as the token LM reads it), at the level the codec was trained
  around (:func:`hasrd.enhance.features.level_gain`); ``default`` is the built-in codec.
- ``{type: ssl, path: PATH_OR_ID, layer: L}``: hidden state ``L`` (0 = the CNN features after the
  projection, 1.. the transformer layers) of a HuBERT/WavLM model loaded with
  ``transformers.AutoModel.from_pretrained(path)``.

Every encoder has a fingerprint (the codec's own; for SSL a hash of the model config, its weights
and the layer): caches are named after it and exports store it, so features of another encoder are
never mixed in.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

DEFAULT_SPEECH_ENCODER = {"type": "codec", "codec": "default"}


def normalise_spec(spec: dict[str, Any] | str | None) -> dict[str, Any]:
    """A speech-encoder spec with its defaults, a local folder made absolute; one-line ValueError if malformed."""
    if spec is None:
        spec = dict(DEFAULT_SPEECH_ENCODER)
    if isinstance(spec, str):  # shorthand: a codec name or folder
        spec = {"type": "codec", "codec": spec}
    spec = dict(spec)
    kind = spec.get("type", "codec")
    if kind == "codec":
        from ..lm.codec_lm import codec_spec

        return {"type": "codec", "codec": codec_spec(spec.get("codec") or "default")}
    if kind == "ssl":
        if not spec.get("path"):
            raise ValueError("star.speech_encoder {type: ssl} needs path (a HuBERT/WavLM folder or hub id)")
        p = Path(str(spec["path"]))
        return {"type": "ssl", "path": str(p.resolve()) if p.is_dir() else str(spec["path"]), "layer": int(spec.get("layer", 6))}
    raise ValueError(f"star.speech_encoder.type must be codec or ssl, not {kind!r}")


class SpeechEncoder:
    """A frozen speech encoder: ``features(wav [1, 1, T] at sample_rate) -> [F, dim]`` float32.

    ``SpeechEncoder(spec)`` builds the class that :data:`SPEECH_ENCODERS` names for the spec's
    ``type``; each sets ``dim``, ``sample_rate`` and ``name``."""

    spec: dict[str, Any]
    dim: int
    sample_rate: int
    name: str

    def __new__(cls, spec: dict[str, Any] | str | None = None, map_location: str = "cpu"):
        if cls is SpeechEncoder:
            cls = SPEECH_ENCODERS[normalise_spec(spec)["type"]]
        return super().__new__(cls)

    def __init__(self, spec: dict[str, Any] | str | None, map_location: str = "cpu"):
        self.spec = normalise_spec(spec)
        self._fp: str | None = None

    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = self._fingerprint()
        return self._fp

    def _fingerprint(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def to(self, device) -> SpeechEncoder:  # pragma: no cover - interface
        raise NotImplementedError

    def features(self, wav: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class CodecSpeechEncoder(SpeechEncoder):
    """``{type: codec}``: a token codec's latent before quantization, at its training level."""

    def __init__(self, spec: dict[str, Any] | str | None, map_location: str = "cpu"):
        super().__init__(spec, map_location)
        from ..codecs import CodecView, TokenCodec, load_codec

        codec = load_codec(self.spec["codec"], map_location=map_location)
        if not isinstance(codec, TokenCodec):
            raise ValueError(f"speech_encoder: {self.spec['codec']} is a continuous codec; use a token codec "
                             "(hasrd or hcodec) or {type: ssl}")
        self.view = CodecView(codec)
        self.dim, self.sample_rate = self.view.latent_dim, int(codec.sample_rate)
        self.name = f"codec {codec.codec_name}"

    def _fingerprint(self) -> str:
        return self.view.codec.fingerprint()

    def to(self, device) -> SpeechEncoder:
        self.view.codec.to(device)
        return self

    @torch.inference_mode()
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        from ..enhance.features import level_gain

        z, _ = self.view.analyse(wav * level_gain(wav))
        return z[0].T.float()


class SslSpeechEncoder(SpeechEncoder):
    """``{type: ssl}``: one hidden state of a HuBERT/WavLM model (transformers)."""

    def __init__(self, spec: dict[str, Any] | str | None, map_location: str = "cpu"):
        super().__init__(spec, map_location)
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(self.spec["path"]).eval()
        except OSError as exc:
            raise ValueError(f"speech_encoder: cannot load {self.spec['path']} ({' '.join(str(exc).split())[:200]})") from None
        n = int(self.model.config.num_hidden_layers)
        if not 0 <= self.spec["layer"] <= n:
            raise ValueError(f"speech_encoder.layer must be in 0..{n}, not {self.spec['layer']}")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dim, self.sample_rate = int(self.model.config.hidden_size), 16000
        self.name = f"ssl {type(self.model).__name__} layer {self.spec['layer']}"

    def _fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps({"layer": self.spec["layer"], "config": self.model.config.to_dict()},
                                      sort_keys=True, default=str).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def to(self, device) -> SpeechEncoder:
        self.model.to(device)
        return self

    @torch.inference_mode()
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        out = self.model(wav[:, 0], output_hidden_states=True)
        return out.hidden_states[self.spec["layer"]][0].float()


#: ``star.speech_encoder.type`` -> class
SPEECH_ENCODERS: dict[str, type[SpeechEncoder]] = {"codec": CodecSpeechEncoder, "ssl": SslSpeechEncoder}


def spec_key(spec: dict[str, Any]) -> str:
    """A short stable hash of a normalised spec (part of cache names)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
