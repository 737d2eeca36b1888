"""HuBERT / WavLM teachers from transformers (a local folder or a hub id)."""
from __future__ import annotations

import torch

from ..encoders.ssl import SSLFeatures, load_ssl_model
from .base import Teacher
from .kmeans import KMeansUnits


class SSLTeacher(Teacher):
    """Hidden states of one layer, or the average of several, of a frozen HuBERT/WavLM.

    Args:
        arch: ``"hubert"`` or ``"wavlm"``.
        pretrained: local folder or hub id passed to ``from_pretrained``.
        layers: hidden-state indices (0 = CNN output, ``L`` = last layer); several are averaged.
        config: build a random model from this config instead (tests only).
        kmeans: centroid file for discrete units, or ``None``.
        normalize_input: per-utterance waveform normalisation (for WavLM-Large-style models).
    """

    def __init__(self, arch: str = "hubert", pretrained: str | None = None, layers: list[int] | int | None = None,
                 config: dict | None = None, kmeans: str | None = None, sample_rate: int = 16000,
                 normalize_input: bool = False):
        super().__init__()
        if isinstance(layers, int):
            layers = [layers]
        keep = max(layers) if layers else None
        model = load_ssl_model(arch, pretrained, config, num_layers=keep if keep else None)
        model.requires_grad_(False)
        self.net = SSLFeatures(model, layers=layers, normalize_input=normalize_input)
        self.sample_rate = sample_rate
        self.frame_rate = sample_rate / self.net.hop
        self.dim = self.net.dim
        self.kmeans = KMeansUnits.load(kmeans) if kmeans else None
        self.n_units = self.kmeans.n_units if self.kmeans is not None else None

    def set_kmeans(self, kmeans: KMeansUnits) -> None:
        self.kmeans, self.n_units = kmeans, kmeans.n_units

    @torch.no_grad()
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(wav)

    def units(self, features: torch.Tensor) -> torch.Tensor | None:
        return None if self.kmeans is None else self.kmeans(features)
