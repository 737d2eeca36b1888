"""HuBERT / WavLM encoders from ``transformers``: built from a config or loaded from a path/hub id.

The same loader serves the codec's SSL encoder and the SSL teachers, so a model folder that works
for one works for the other. Nothing here downloads anything unless ``pretrained`` names a hub id
and the machine is online; tests use tiny random configs saved to a temp folder.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ARCHS = ("hubert", "wavlm")

# Training-time behaviours of the transformers models that a codec or teacher must not get:
# SpecAugment masking and layer drop change the output at random.
_NO_RANDOMNESS = {"apply_spec_augment": False, "mask_time_prob": 0.0, "mask_feature_prob": 0.0, "layerdrop": 0.0}


def _classes(arch: str):
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    if arch == "hubert":
        return HubertConfig, HubertModel
    if arch == "wavlm":
        return WavLMConfig, WavLMModel
    raise ValueError(f"unknown SSL architecture {arch!r}; use one of {_ARCHS}")


def load_ssl_model(arch: str, pretrained: str | None = None, config: dict[str, Any] | None = None,
                   num_layers: int | None = None) -> nn.Module:
    """A HuBERT/WavLM ``transformers`` model.

    Args:
        arch: ``"hubert"`` or ``"wavlm"``.
        pretrained: a local folder or hub id for ``from_pretrained``; ``None`` builds from ``config``.
        config: keyword arguments of ``HubertConfig``/``WavLMConfig`` (used when ``pretrained`` is None).
        num_layers: keep only the first ``num_layers`` transformer layers (the "efficient encoder").
    """
    cfg_cls, model_cls = _classes(arch)
    if pretrained:
        model = model_cls.from_pretrained(pretrained, **_NO_RANDOMNESS)
    else:
        cfg = dict(config or {})
        cfg.update(_NO_RANDOMNESS)
        model = model_cls(cfg_cls(**cfg))
    if num_layers is not None:
        total = len(model.encoder.layers)
        if not 1 <= num_layers <= total:
            raise ValueError(f"num_layers must be in 1..{total}, got {num_layers}")
        model.encoder.layers = model.encoder.layers[:num_layers]
        model.config.num_hidden_layers = num_layers
    # No masked-prediction head is used; free its memory if the checkpoint had one.
    if hasattr(model, "masked_spec_embed") and model.masked_spec_embed is not None and not model.config.apply_spec_augment:
        model.masked_spec_embed = None
    return model


def ssl_config_dict(model: nn.Module) -> dict[str, Any]:
    """The architecture config of a loaded model, JSON-safe, to rebuild it without the hub."""
    d = model.config.to_dict()
    for key in ("_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype", "model_type"):
        d.pop(key, None)
    return d


def conv_geometry(model: nn.Module) -> tuple[int, int]:
    """``(hop, receptive_field)`` in samples of the model's convolutional feature extractor."""
    hop, rf = 1, 1
    for k, s in zip(model.config.conv_kernel, model.config.conv_stride):
        rf += (k - 1) * hop
        hop *= s
    return hop, rf


class SSLFeatures(nn.Module):
    """Frame features of a HuBERT/WavLM model, exactly ``T / hop`` frames for ``T`` samples.

    The input is padded by ``(receptive_field - hop) / 2`` samples on each side, so frame ``i`` is
    centred on samples ``[i*hop, (i+1)*hop)`` and the frame count is exact (asserted).

    Args:
        layers: hidden-state indices to return (0 = the CNN/projection output, ``L`` = last
            layer); several are averaged.
        normalize_input: zero-mean/unit-variance per utterance (WavLM-Large style front ends).
    """

    def __init__(self, model: nn.Module, layers: list[int] | None = None, normalize_input: bool = False):
        super().__init__()
        self.model = model
        n = len(model.encoder.layers)
        self.layers = list(layers) if layers else [n]
        for i in self.layers:
            if not 0 <= i <= n:
                raise ValueError(f"layer {i} outside 0..{n}")
        self.normalize_input = normalize_input
        self.hop, rf = conv_geometry(model)
        self.pad = (rf - self.hop) // 2
        self.dim = model.config.hidden_size

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` (``T`` a multiple of the hop) -> ``[B, T / hop, hidden]``."""
        if wav.shape[-1] % self.hop:
            raise ValueError(f"SSL input length {wav.shape[-1]} is not a multiple of the hop {self.hop}")
        x = wav[:, 0]
        if self.normalize_input:
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)
        x = F.pad(x, (self.pad, self.pad))
        need_all = self.layers != [len(self.model.encoder.layers)]
        out = self.model(x, output_hidden_states=need_all)
        if need_all:
            h = torch.stack([out.hidden_states[i] for i in self.layers]).mean(0)
        else:
            h = out.last_hidden_state
        frames = wav.shape[-1] // self.hop
        if h.shape[1] != frames:
            raise RuntimeError(f"SSL model gave {h.shape[1]} frames for {wav.shape[-1]} samples, expected {frames}")
        return h


class SSLEncoder(nn.Module):
    """Codec encoder on a HuBERT/WavLM backbone: features of the last kept layer, projected.

    Args:
        arch, pretrained, config, num_layers: see :func:`load_ssl_model`.
        latent_dim: output channels (a 1x1 projection of the hidden size).
        trainable: ``"frozen"`` (no gradient into the backbone), ``"full"``, or ``"last:N"``
            (only the last ``N`` kept transformer layers train).
    """

    def __init__(self, arch: str, latent_dim: int, pretrained: str | None = None,
                 config: dict | None = None, num_layers: int | None = None,
                 trainable: str = "frozen", normalize_input: bool = False):
        super().__init__()
        model = load_ssl_model(arch, pretrained, config, num_layers)
        self.arch_config = ssl_config_dict(model)
        self.features = SSLFeatures(model, normalize_input=normalize_input)
        self.hop = self.features.hop
        self.proj = nn.Conv1d(self.features.dim, latent_dim, 1)
        self.trainable = trainable
        self._set_trainable(trainable)

    def _set_trainable(self, mode: str) -> None:
        model = self.features.model
        if mode == "full":
            return
        for p in model.parameters():
            p.requires_grad_(False)
        if mode == "frozen":
            return
        if mode.startswith("last:"):
            n = int(mode.split(":", 1)[1])
            for layer in model.encoder.layers[-n:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
            return
        raise ValueError(f"trainable must be 'frozen', 'full' or 'last:N', got {mode!r}")

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T]`` -> ``[B, latent_dim, T / hop]``."""
        if self.trainable == "frozen":
            with torch.no_grad():
                self.features.model.eval()
                h = self.features(wav)
        else:
            h = self.features(wav)
        return self.proj(h.transpose(1, 2))
