"""Training the enhancer: ``task: enhance`` on the one training loop (:mod:`hasrd.train.loop`).

A config with ``task: enhance`` makes ``train.py`` run an :class:`EnhanceTask` on the loop that
every task shares (steps, checkpoint folders, ``--resume``, SIGTERM handling, metrics.jsonl and
tensorboard); the task brings its set-up, step, validation and export::

    task: enhance
    enhance: {codec: default, form: continuous, n_q: 6, requantize: false, crop_frames: 100}
    model: {d_model: 192, heads: 4, ffn: 384, layers: 4, kernel: 15, dropout: 0.1}
    data: {train: se/train/manifest.jsonl, val: se/val/manifest.jsonl}
    train: {batch_size: 16, lr: 5.0e-4, max_steps: 3000, ...}
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..codecs import CodecView, load_codec
from ..train import Parts, Task, TrainingError, check_keys
from ..train.task import pesq_wb
from .enhancer import Enhancer
from .features import PairCrops, collate_pairs, latent_stats, load_or_compute, pair_paths
from .model import FORMS, LatentEnhancer

DEFAULT_ENHANCE = {"codec": "default", "form": "continuous", "n_q": None, "requantize": False, "crop_frames": 100}


class EnhanceTask(Task):
    """The enhancer's set-up, step, validation and export on the one training loop."""

    exports = "an enhancer"

    def build(self, resume: bool) -> Parts:
        loop, acc, t = self.loop, self.loop.acc, self.loop.t
        check_keys("enhance", self.cfg.get("enhance") or {}, DEFAULT_ENHANCE)
        e = {**DEFAULT_ENHANCE, **(self.cfg.get("enhance") or {})}
        if e["form"] not in FORMS:
            raise TrainingError(f"enhance.form must be one of {FORMS}, not {e['form']!r}")
        data_cfg = self.cfg.get("data", {})
        if not data_cfg.get("train"):
            raise TrainingError("config has no data.train (a manifest written by python -m hasrd.enhance.recipe)")
        try:
            codec = load_codec(e["codec"])
            self.view = CodecView(codec)
        except (FileNotFoundError, ValueError) as exc:
            raise TrainingError(f"enhance.codec: {exc}") from None
        self.ecfg = e
        self.sample_rate = codec.sample_rate
        n_q = int(e["n_q"] or codec.num_codebooks) or None  # a continuous codec has 0 codebooks
        if e["form"] == "tokens" and (not self.view.tokens or not 1 <= n_q <= codec.num_codebooks):
            raise TrainingError(f"enhance.n_q must be in 1..{codec.num_codebooks} for the tokens form of a token codec")
        self.n_q = n_q

        # features: the main process encodes and caches them, the others read the cache
        self.feats = loop.main_first(load_or_compute, data_cfg["train"], self.view)
        self.val_feats = None
        if data_cfg.get("val"):
            if acc.is_main_process:
                self.val_feats = load_or_compute(data_cfg["val"], self.view, progress=False)
            self.val_manifest = Path(data_cfg["val"])
        self.has_val = bool(data_cfg.get("val"))

        net_cfg = {**(self.cfg.get("model") or {}), "form": e["form"]}
        if e["form"] == "continuous":
            net_cfg["latent_dim"] = self.view.latent_dim
        else:
            net_cfg.update(n_q=n_q, codebook_size=int(codec.codebook_sizes[0]))
            if len(set(codec.codebook_sizes[:n_q])) != 1:
                raise TrainingError("the tokens form needs codebooks of one size")
        network = LatentEnhancer(net_cfg)
        if e["form"] == "continuous":
            network.set_stats(*latent_stats(self.feats))  # restored from the checkpoint on a resume
        self.network_config = network.config
        dataset = PairCrops(self.feats, e["form"], int(e["crop_frames"]), n_q, t.seed)
        self.net, self.opt = acc.prepare(network, loop.optimizer(network.parameters()))
        acc.print(f"training a {e['form']} enhancer on {acc.device} with {acc.num_processes} processes; "
                  f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters; "
                  f"{len(self.feats)} pairs, {int(self.feats.offsets[-1])} frames")
        return Parts(dataset, collate_pairs, [self.net])

    def batch_items(self, batch) -> int:
        return batch["input"].shape[0]

    def _enhancer(self) -> Enhancer:
        settings = {"n_q": self.n_q if self.ecfg["form"] == "tokens" else None, "requantize": bool(self.ecfg["requantize"])}
        return Enhancer(self.view.codec, self.loop.acc.unwrap_model(self.net), settings)

    def step(self, batch: dict) -> dict:
        acc = self.loop.acc
        net = self.net
        inner = acc.unwrap_model(net)
        x, y, lengths = (batch[k].to(acc.device) for k in ("input", "target", "lengths"))
        if inner.form == "continuous":
            x, y = inner.normalise(x), inner.normalise(y)
        loss, terms = inner.loss(net(x, lengths), y, lengths)
        logs = self.loop.update(loss, net, self.opt, "enhancer")
        if logs is None:
            return {"skipped": 1.0}
        logs["loss/total"] = loss.detach()
        logs.update({f"loss/{k}": v.detach() if isinstance(v, torch.Tensor) else v for k, v in terms.items()})
        return logs

    def validation_metrics(self) -> set[str]:
        return {"val/loss", "val/pesq_wb"} if self.has_val and self.loop.t.val_every else set()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out loss on whole pairs, and PESQ (wide-band) of a few enhanced files against their clean ones."""
        from ..io.audio import load_audio

        if self.val_feats is None or not self.loop.acc.is_main_process:
            return {}
        net = self.loop.acc.unwrap_model(self.net)
        net.eval()
        out: dict[str, float] = {}
        try:
            losses = []
            for i in range(len(self.val_feats)):
                a, b = self.val_feats.span(i)
                if self.ecfg["form"] == "continuous":
                    x = net.normalise(self.val_feats.z_noisy[a:b].float().T[None])
                    y = net.normalise(self.val_feats.z_clean[a:b].float().T[None])
                else:
                    x = self.val_feats.c_noisy[a:b, : self.n_q].long().T[None]
                    y = self.val_feats.c_clean[a:b, : self.n_q].long().T[None]
                lengths = torch.tensor([b - a])
                losses.append(float(net.loss(net(x, lengths), y, lengths)[0]))
            out["val/loss"] = float(np.mean(losses))
            enh = self._enhancer()
            pesqs, samples = [], []
            for noisy_path, clean_path in pair_paths(self.val_manifest)[: self.loop.t.val_files]:
                noisy, _ = load_audio(noisy_path, enh.sample_rate, mono=True)
                clean, _ = load_audio(clean_path, enh.sample_rate, mono=True)
                y = enh.enhance(torch.from_numpy(noisy)[None])[0, 0].numpy()
                pesqs.append(pesq_wb(clean[0], y, enh.sample_rate))
                samples.append(y)
            valid = [p for p in pesqs if p is not None]
            if valid:
                out["val/pesq_wb"] = float(np.mean(valid))
            self.val_samples = samples
        finally:
            net.train()
        return out

    def export(self, directory: Path, dtype: str) -> None:
        """The self-contained enhancer folder (network, settings, and a copy of its codec)."""
        self._enhancer().save_pretrained(directory)
        (directory / "training.json").write_text(json.dumps(
            {"step": self.loop.state.step, "data": self.cfg.get("data"), "enhance": self.ecfg}, indent=2) + "\n")
