"""Training speech-to-audio generation (STAR style): ``task: star`` on the one training loop
(:mod:`hasrd.train.loop`: Accelerate, checkpoints, exact ``--resume``, metrics.jsonl,
best/patience, SIGTERM).

A config with ``task: star`` makes ``train.py`` run a :class:`StarTask`::

    task: star
    star: {stage: 1, speech_encoder: {type: codec, codec: default}, codec: runs/wavcube_s2/export,
           semantic_dim: 256, prompt_frames: 500, crop_frames: 200, temperature: 0.07,
           bridge_prob: 0.5, cond_dropout: 0.1}
    model: {bridge: {d_model: 128, layers: 2, heads: 4, ffn: 256, dropout: 0.1},
            generator: {d_model: 192, layers: 4, heads: 4, ffn: 512, dropout: 0.0}}
    data: {events: data/events/manifest_train.jsonl, prompts: data/prompts/manifest_train.jsonl,
           val_events: data/events/manifest_eval.jsonl, val_prompts: data/prompts/manifest_eval.jsonl}

Stage 1 trains the bridge (spoken prompt -> its text's vector; InfoNCE + cosine); stage 2
(``star.stage=2 train.init_from=RUN1/export``) trains the flow generator on the codec latents of
the event clips, the stage-1 bridge frozen. See docs/star.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..train import Parts, Task, TrainingError, check_keys
from ..train.task import spread_indices
from .data import (
    ClipItems,
    PromptItems,
    class_descriptions,
    clip_latents,
    collate_clips,
    collate_prompts,
    latent_stats,
    prompt_features,
    prototypes,
    read_events,
    read_prompts,
)
from .encoders import SpeechEncoder, normalise_spec
from .model import StarNetwork
from .pipeline import read_export, save_export

DEFAULT_STAR = {"stage": 1, "speech_encoder": None, "codec": None, "semantic_dim": 256, "prompt_frames": 500,
                "crop_frames": 200, "temperature": 0.07, "bridge_prob": 0.5, "cond_dropout": 0.1}


def contrastive_loss(p: torch.Tensor, text: torch.Tensor, cls: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of unit vectors ``p [B, S]`` against the batch's text vectors ``text [B, S]``: the
    positives of row ``i`` are every column of its class (so duplicates of a text or a class are
    never pushed apart), ``-log(sum_pos exp / sum_all exp)``; and ``1 - cos(p_i, text_i)``."""
    logits = p @ text.T / float(temperature)
    pos = (cls[:, None] == cls[None, :]) | torch.eye(len(cls), dtype=torch.bool, device=p.device)
    nce = (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~pos, float("-inf")), 1)).mean()
    cos = 1.0 - (p * text).sum(-1).mean()
    return nce, cos


class StarTask(Task):
    """The speech-to-audio model's set-up, step, validation and export on the one training loop."""

    exports = "a speech-to-audio model"

    def build(self, resume: bool) -> Parts:
        loop, acc, t = self.loop, self.loop.acc, self.loop.t
        e, stage, init = self._settings()
        self._models(e, stage, init)
        d = self.cfg.get("data") or {}
        events, prompts = self._data(d, stage)
        S = int(e["semantic_dim"])
        mcfg = self.cfg.get("model") or {}
        net_cfg = {"stage": stage, "semantic_dim": S, "speech_dim": self.encoder.dim,
                   "latent_dim": int(self.codec_obj.latent_dim) if self.codec_obj is not None else 0,
                   "bridge": init[0]["network"]["bridge"] if init else mcfg.get("bridge"),
                   "generator": mcfg.get("generator")}
        try:
            network = StarNetwork(net_cfg)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"model: {exc}") from None
        self.protos = torch.from_numpy(prototypes(self.descriptions, S))
        if stage == 1:
            dataset = PromptItems(self.prompt_feats, prompts, self.classes, S, int(e["prompt_frames"]), t.seed)
            self.collate = collate_prompts
            params = list(network.parameters())
        else:
            dataset = self._stage2_items(network, init, events, prompts)
            self.collate = collate_clips
            params = [p for n, p in network.named_parameters() if not n.startswith("bridge.")]
        self.network_config = network.config
        self.sample_rate = int(self.codec_obj.sample_rate) if self.codec_obj is not None else self.encoder.sample_rate
        self.net, self.opt = acc.prepare(network, loop.optimizer(params))
        what = "bridge" if stage == 1 else "flow generator (bridge frozen)"
        acc.print(f"training a speech-to-audio {what} on {acc.device} with {acc.num_processes} processes; "
                  f"{sum(p.numel() for p in params) / 1e6:.2f} M trained parameters; {len(dataset)} "
                  f"{'prompts' if stage == 1 else 'clips'}, {len(self.classes)} classes, speech encoder {self.encoder.name}")
        return Parts(dataset, self.collate, [self.net])

    def _settings(self):
        """The ``star`` section with its defaults, the stage, and (stage 2) the stage-1 export."""
        t = self.loop.t
        check_keys("star", self.cfg.get("star") or {}, DEFAULT_STAR)
        e = {**DEFAULT_STAR, **(self.cfg.get("star") or {})}
        stage = int(e["stage"])
        if stage not in (1, 2):
            raise TrainingError(f"star.stage must be 1 or 2, not {e['stage']!r}")
        d = self.cfg.get("data") or {}
        if stage == 1 and not d.get("prompts"):
            raise TrainingError("stage 1 needs data.prompts (a manifest of spoken prompts: rows {path, text, class})")
        if stage == 2 and not d.get("events"):
            raise TrainingError("stage 2 needs data.events (a manifest of python -m hasrd.events.recipe)")
        if stage == 2 and not t.init_from:
            raise TrainingError("stage 2 needs train.init_from=RUN1/export (the stage-1 bridge it keeps frozen)")
        self.ecfg, self.stage = e, stage
        init = None
        if stage == 2:
            try:
                init = read_export(Path(t.init_from))
            except FileNotFoundError as exc:
                raise TrainingError(f"train.init_from: {exc}") from None
            meta = init[0]
            if e.get("speech_encoder") is not None and normalise_spec(e["speech_encoder"]) != meta["speech_encoder"]:
                raise TrainingError(f"star.speech_encoder {normalise_spec(e['speech_encoder'])} is not the one of "
                                    f"train.init_from ({meta['speech_encoder']}); leave it out in stage 2")
            e["speech_encoder"], e["semantic_dim"] = meta["speech_encoder"], int(meta["semantic_dim"])
            e["prompt_frames"] = int(meta.get("prompt_frames") or e["prompt_frames"])
        return e, stage, init

    def _models(self, e: dict, stage: int, init) -> None:
        """The frozen speech encoder and the continuous codec the generator works in."""
        try:
            self.encoder = SpeechEncoder(e["speech_encoder"])
        except (FileNotFoundError, ValueError) as exc:
            raise TrainingError(f"star.speech_encoder: {exc}") from None
        if init is not None and self.encoder.fingerprint() != init[0]["speech_encoder_fingerprint"]:
            raise TrainingError(f"train.init_from: its speech encoder now has fingerprint {self.encoder.fingerprint()}, "
                                f"not {init[0]['speech_encoder_fingerprint']}")
        self.codec_obj = None
        if e.get("codec"):
            from ..codecs import TokenCodec, load_codec

            try:
                self.codec_obj = load_codec(e["codec"])
            except (FileNotFoundError, ValueError) as exc:
                raise TrainingError(f"star.codec: {exc}") from None
            if isinstance(self.codec_obj, TokenCodec):
                raise TrainingError(f"star.codec: the generator works on a continuous codec's latent, not "
                                    f"{self.codec_obj.codec_name!r} (train one with codec_configs/wavcube_cpu.yaml)")
        elif stage == 2:
            raise TrainingError("stage 2 needs star.codec (a continuous codec: a folder or name)")

    def _data(self, d: dict, stage: int) -> tuple[list, list]:
        """Events and prompts (training and held-out), the class descriptions, cached features."""
        loop, acc = self.loop, self.loop.acc
        try:
            events = read_events(d["events"]) if d.get("events") else []
            prompts = read_prompts(d["prompts"]) if d.get("prompts") else []
            self.val_events = read_events(d["val_events"]) if d.get("val_events") else []
            self.val_prompts = read_prompts(d["val_prompts"]) if d.get("val_prompts") else []
            descs = class_descriptions(events + self.val_events)
            for r in prompts + self.val_prompts:  # prompt classes without clips: their texts describe them
                if str(r["class"]) not in descs:
                    descs[str(r["class"])] = []
                if not any(str(x["class"]) == str(r["class"]) for x in events + self.val_events) \
                        and r["text"] not in descs[str(r["class"])]:
                    descs[str(r["class"])].append(r["text"])
            self.descriptions = {k: descs[k] for k in sorted(descs)}
            self.classes = list(self.descriptions)
            self.prompt_feats = loop.main_first(prompt_features, d["prompts"], self.encoder) if prompts else None
            self.val_prompt_feats = (prompt_features(d["val_prompts"], self.encoder, progress=False)
                                     if self.val_prompts and acc.is_main_process else None)
            if stage == 2:
                self.latents = loop.main_first(clip_latents, d["events"], self.codec_obj)
                self.val_latents = (clip_latents(d["val_events"], self.codec_obj, progress=False)
                                    if self.val_events and acc.is_main_process else None)
        except (OSError, ValueError) as exc:
            raise TrainingError(str(exc)) from None
        return events, prompts

    def _stage2_items(self, network: StarNetwork, init, events: list, prompts: list) -> ClipItems:
        """Stage 2: the stage-1 bridge loaded and frozen, latent statistics, the clip items."""
        e = self.ecfg
        bridge_state = {k[len("bridge."):]: v for k, v in init[1].items() if k.startswith("bridge.")}
        try:
            network.bridge.load_state_dict(bridge_state)
        except RuntimeError as exc:
            raise TrainingError(f"train.init_from: bridge weights do not match ({str(exc).splitlines()[0]})") from None
        network.bridge.requires_grad_(False)
        mean, std = latent_stats(self.latents)
        network.set_stats(mean, std)  # restored from the checkpoint on a resume
        bridge_vectors = self._bridge_vectors(network, prompts) if prompts and float(e["bridge_prob"]) > 0 else {}
        return ClipItems(self.latents, events, self.descriptions, int(e["semantic_dim"]), mean, std,
                         int(e["crop_frames"]), self.loop.t.seed, bridge_vectors,
                         float(e["bridge_prob"]) if bridge_vectors else 0.0, float(e["cond_dropout"]))

    @torch.no_grad()
    def _bridge_vectors(self, network: StarNetwork, prompts: list[dict]) -> dict[str, torch.Tensor]:
        """The frozen bridge's vector of every training prompt (whole, up to ``prompt_frames``), per class."""
        network.bridge.eval()
        limit = int(self.ecfg["prompt_frames"])
        per: dict[str, list[torch.Tensor]] = {}
        for i, r in enumerate(prompts):
            v = network.bridge(self.prompt_feats.get(i)[None, :limit].float())[0]
            per.setdefault(str(r["class"]), []).append(v)
        network.bridge.train()
        return {c: torch.stack(vs) for c, vs in per.items()}

    def batch_items(self, batch) -> int:
        return (batch["x"] if "x" in batch else batch["x1"]).shape[0]

    def step(self, batch: dict) -> dict:
        b = {k: v.to(self.loop.acc.device) for k, v in batch.items()}
        if self.stage == 1:
            p = self.net("bridge", b["x"], b["mask"])
            nce, cos = contrastive_loss(p, b["text"], b["cls"], float(self.ecfg["temperature"]))
            loss, terms = nce + cos, {"loss/nce": nce, "loss/cos": cos}
        else:
            loss = self.net("flow", b["x1"], b["x0"], b["t"], b["c"], b["mask"], b["drop"])
            terms = {"loss/flow": loss}
        logs = self.loop.update(loss, self.net, self.opt, "star")
        if logs is None:
            return {"skipped": 1.0}
        logs["loss/total"] = loss.detach()
        logs.update({k: v.detach() for k, v in terms.items()})
        return logs

    def validation_metrics(self) -> set[str]:
        if not self.loop.t.val_every:
            return set()
        names = {"val/cos", "val/retrieval"} if self.val_prompts else set()
        return names | ({"val/flow_loss"} if self.stage == 2 and self.val_events else set())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Stage 1: mean cosine of the bridge's vector to the true text vector and class retrieval
        accuracy (nearest prototype) on the eval prompts. Stage 2: the flow loss on (up to 64,
        evenly spaced) eval clips with fixed noise and times (epoch-0 items), and the eval prompts'
        figures as in stage 1 (the frozen bridge's)."""
        if not self.loop.acc.is_main_process:
            return {}
        net = self.loop.acc.unwrap_model(self.net)
        net.eval()
        out: dict[str, float] = {}
        try:
            if self.val_prompt_feats is not None:
                S, limit = net.semantic_dim, int(self.ecfg["prompt_frames"])
                from ..lm.tasks import text_embedding

                cos, hits = [], []
                index = {c: i for i, c in enumerate(self.classes)}
                for i, r in enumerate(self.val_prompts):
                    x = self.val_prompt_feats.get(i)[None, :limit].float().to(self.loop.acc.device)
                    p = net("bridge", x)[0].cpu()
                    cos.append(float(p @ torch.from_numpy(text_embedding(r["text"], S))))
                    hits.append(index.get(str(r["class"]), -1) == int((self.protos @ p).argmax()))
                out["val/cos"], out["val/retrieval"] = float(np.mean(cos)), float(np.mean(hits))
            if self.stage == 2 and self.val_latents is not None:
                data = ClipItems(self.val_latents, self.val_events, self.descriptions, net.semantic_dim, net.z_mean.cpu(),
                                 net.z_std.cpu(), int(self.ecfg["crop_frames"]), self.loop.t.seed)
                losses = []
                for i in spread_indices(len(data), 64):
                    b = {k: v.to(self.loop.acc.device) for k, v in collate_clips([data[(0, i)]]).items()}
                    losses.append(float(net("flow", b["x1"], b["x0"], b["t"], b["c"], b["mask"])))
                out["val/flow_loss"] = float(np.mean(losses))
        finally:
            net.train()
        return out

    def export(self, directory: Path, dtype: str) -> None:
        """``star.json`` + ``model.safetensors`` (:mod:`hasrd.star.pipeline`)."""
        from ..lm.codec_lm import codec_spec

        c = self.codec_obj
        meta = {"stage": self.stage, "semantic_dim": int(self.ecfg["semantic_dim"]), "classes": self.descriptions,
                "speech_encoder": self.encoder.spec, "speech_encoder_fingerprint": self.encoder.fingerprint(),
                "codec": codec_spec(self.ecfg["codec"]) if c is not None else None,
                "codec_name": c.codec_name if c is not None else None,
                "codec_fingerprint": c.fingerprint() if c is not None else None,
                "sample_rate": self.sample_rate, "crop_frames": int(self.ecfg["crop_frames"]),
                "prompt_frames": int(self.ecfg["prompt_frames"]), "star": self.ecfg}
        save_export(directory, self.loop.acc.unwrap_model(self.net), meta)
        (directory / "training.json").write_text(json.dumps(
            {"step": self.loop.state.step, "data": self.cfg.get("data"), "star": self.ecfg}, indent=2, default=str) + "\n")
