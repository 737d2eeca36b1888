"""K-means unit inventories over teacher features (fit with scikit-learn, applied in torch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class KMeansUnits(nn.Module):
    """Nearest-centroid assignment; centroids live in a buffer so they save with the teacher."""

    def __init__(self, centroids: torch.Tensor):
        super().__init__()
        self.register_buffer("centroids", centroids.float())

    @property
    def n_units(self) -> int:
        return self.centroids.shape[0]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``LongTensor[B, T]``."""
        d = torch.cdist(feats.float(), self.centroids.unsqueeze(0).expand(feats.shape[0], -1, -1))
        return d.argmin(-1)

    @classmethod
    def fit(cls, feats: np.ndarray, n_units: int, seed: int = 0, batch_size: int = 4096) -> "KMeansUnits":
        """Fit on ``[N, D]`` frames with scikit-learn's mini-batch k-means."""
        from sklearn.cluster import MiniBatchKMeans

        if len(feats) < n_units:
            raise ValueError(f"k-means needs at least {n_units} frames, got {len(feats)}")
        km = MiniBatchKMeans(n_clusters=n_units, random_state=seed, batch_size=batch_size, n_init=3)
        km.fit(feats)
        return cls(torch.from_numpy(km.cluster_centers_))

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file({"centroids": self.centroids.contiguous()}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "KMeansUnits":
        from safetensors.torch import load_file

        return cls(load_file(str(path))["centroids"])
