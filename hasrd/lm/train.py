"""Training the token LM: ``task: lm`` on the one training loop (:mod:`hasrd.train.loop`).

A config with ``task: lm`` makes ``train.py`` run an :class:`LMTask` on the loop that every task
shares (as ``task: enhance``, :mod:`hasrd.enhance.train`); the task brings the LM's set-up, step,
validation and export::

    task: lm
    lm: {codec: default, n_q: 3, tasks: null, crop_frames: 150, ref_frames: 150, text_dim: 64}
    model: {name: hasrd, sample_rate: 16000, d_model: 256, layers: 4, heads: 4, ffn: 768, max_positions: 1024}
    data: {train: data/lm/train/manifest.jsonl, val: data/lm/val/manifest.jsonl}
    train: {batch_size: 8, lr: 3.0e-4, max_steps: 20000, ...}

``lm.tasks``: the tasks to train (null: every task of the training manifest). ``model`` holds
:class:`hasrd.lm.TokenLM` keys; ``n_codebooks`` (= ``lm.n_q``), ``codebook_size``, ``cond_dim``
and ``ref_dim`` (the codec's latent size; ``ref_dim`` 0 without tse/vc), ``text_dim``
(``lm.text_dim``, 0 without lass) and ``tasks`` are filled in here. ``model.name`` and
``model.sample_rate``, when given, name the codec family and rate the config is meant for and are
checked against ``lm.codec``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from ..codecs import load_codec
from ..train import Parts, Task, TrainingError, check_keys
from ..train.task import spread_indices
from .codec_lm import CodecLM, LMNetwork, codec_spec, lm_view
from .data import ExampleCrops, collate_examples, examples_of, latent_stats, load_or_compute, read_rows
from .model import DEFAULT_CONFIG, LAYOUT
from .tasks import REF_TASKS, TASKS, model_tasks

DEFAULT_LM = {"codec": "default", "n_q": 3, "tasks": None, "crop_frames": 150, "ref_frames": 150, "text_dim": 64}
FILLED = ("n_codebooks", "codebook_size", "cond_dim", "ref_dim", "text_dim", "tasks")


class LMTask(Task):
    """The token LM's set-up, step, validation and export on the one training loop."""

    exports = "a token LM"

    def build(self, resume: bool) -> Parts:
        loop, acc, t = self.loop, self.loop.acc, self.loop.t
        check_keys("lm", self.cfg.get("lm") or {}, DEFAULT_LM)
        e = {**DEFAULT_LM, **(self.cfg.get("lm") or {})}
        data_cfg = self.cfg.get("data", {})
        if not data_cfg.get("train"):
            raise TrainingError("config has no data.train (a manifest written by python -m hasrd.lm.recipe)")
        try:
            codec = load_codec(e["codec"])
            self.view = lm_view(codec)
        except (FileNotFoundError, ValueError) as exc:
            raise TrainingError(f"lm.codec: {exc}") from None
        mcfg = dict(self.cfg.get("model") or {})
        check_keys("model", mcfg, {*DEFAULT_CONFIG, "name", "sample_rate"})  # a TokenLM key, or the codec's name/rate
        for key, have in (("name", codec.codec_name), ("sample_rate", codec.sample_rate)):
            want = mcfg.pop(key, None)
            if want is not None and want != have:
                raise TrainingError(f"model.{key} is {want!r} but lm.codec {e['codec']} has {have!r}")
        n_q = int(e["n_q"])
        if not 1 <= n_q <= codec.num_codebooks or len(set(codec.codebook_sizes[:n_q])) != 1:
            raise TrainingError(f"lm.n_q must be in 1..{codec.num_codebooks} (codebooks of one size)")
        self.ecfg, self.n_q = e, n_q
        self.sample_rate = codec.sample_rate

        # features: the main process encodes and caches them, the others read the cache
        try:
            rows = read_rows(data_cfg["train"])
            self.feats = loop.main_first(load_or_compute, data_cfg["train"], self.view)
            self.val_rows = read_rows(data_cfg["val"]) if data_cfg.get("val") else None
            self.val_feats = (load_or_compute(data_cfg["val"], self.view, progress=False)
                              if self.val_rows and acc.is_main_process else None)
        except (OSError, ValueError) as exc:
            raise TrainingError(str(exc)) from None
        present = [x for x in TASKS if any(r["task"] == x for r in rows)]
        tasks = list(e["tasks"]) if e["tasks"] else present
        missing = [x for x in tasks if x not in present]
        if missing or not tasks:
            raise TrainingError(f"lm.tasks {tasks}: the training manifest has no {missing or 'tasks'} examples "
                                f"(it has {', '.join(present)})")
        try:
            self.tasks = model_tasks(tasks)
        except ValueError as exc:
            raise TrainingError(f"lm.tasks: {exc}") from None
        D = self.view.latent_dim
        net_cfg = {**{k: v for k, v in mcfg.items() if k not in FILLED}, "n_codebooks": n_q,
                   "codebook_size": int(codec.codebook_sizes[0]), "cond_dim": D,
                   "ref_dim": D if set(tasks) & set(REF_TASKS) else 0,
                   "text_dim": int(e["text_dim"]) if "lass" in tasks else 0, "tasks": self.tasks}
        try:
            network = LMNetwork(net_cfg)
        except Exception as exc:  # transformers' config validation raises its own error types
            raise TrainingError(f"model: {' '.join(str(exc).split())}") from None
        network.set_stats(*latent_stats(self.feats))  # restored from the checkpoint on a resume
        lm = network.lm
        self.collate = functools.partial(collate_examples, ref_dim=lm.ref_dim, text_dim=lm.text_dim)
        dataset = ExampleCrops(self.feats, examples_of(rows), self.tasks, n_q, int(e["crop_frames"]),
                               int(e["ref_frames"]), lm.text_dim, t.seed)
        self.net, self.opt = acc.prepare(network, loop.optimizer(network.parameters()))
        acc.print(f"training a token LM ({', '.join(self.tasks)}) on {acc.device} with {acc.num_processes} processes; "
                  f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters; "
                  f"{len(dataset)} examples, {n_q} of {codec.num_codebooks} codebooks")
        return Parts(dataset, self.collate, [self.net])

    def batch_items(self, batch) -> int:
        return batch["cond"].shape[0]

    def _loss(self, net, batch: dict) -> dict:
        b = {k: v.to(self.loop.acc.device) for k, v in batch.items()}
        return net(b["task"], b["cond"], b["targets"], cond_mask=b["cond_mask"], ref=b.get("ref"),
                   ref_mask=b.get("ref_mask"), text=b.get("text"), target_lengths=b["target_lengths"])

    def step(self, batch: dict) -> dict:
        out = self._loss(self.net, batch)
        logs = self.loop.update(out["loss"], self.net, self.opt, "lm")
        if logs is None:
            return {"skipped": 1.0}
        logs["loss/total"] = out["loss"].detach()
        logs.update({f"loss/ce_q{k + 1}": v.detach() if isinstance(v, torch.Tensor) else v
                     for k, v in enumerate(out["ce"])})
        return logs

    def validation_metrics(self) -> set[str]:
        if self.val_rows is None or not self.loop.t.val_every:
            return set()
        names = {"val/loss", "val/loss_shuf"} | {f"val/loss_{x}" for x in self.tasks}
        names |= {f"val/acc_{x}" for x in self.tasks} | {f"val/acc_shuf_{x}" for x in self.tasks}
        for k in range(1, self.n_q + 1):
            names |= {f"val/acc_q{k}", f"val/acc_shuf_q{k}", f"val/acc_copy_q{k}", f"val/acc_prev_q{k}"}
        return names

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """On up to 64 evenly spaced held-out examples (epoch-0 crops), in batches of one task:
        the teacher-forced loss (overall, per task, and with the conditions shuffled across the
        batch) and, per codebook, the accuracy with the true condition (``acc_q{k}``), with a
        shuffled one (``acc_shuf_q{k}``), of copying the input's own codes (``acc_copy_q{k}``) and of
        repeating the previous frame (``acc_prev_q{k}``); per task, the accuracy over codebooks
        with the true and the shuffled condition (:mod:`hasrd.lm.metrics`). A task with one
        example has no shuffled figure."""
        from .metrics import input_use

        if self.val_feats is None or not self.loop.acc.is_main_process:
            return {}
        net = self.loop.acc.unwrap_model(self.net)
        net.eval()
        lm = net.lm
        data = ExampleCrops(self.val_feats, examples_of(self.val_rows), self.tasks, self.n_q, int(self.ecfg["crop_frames"]),
                            int(self.ecfg["ref_frames"]), lm.text_dim, self.loop.t.seed)
        by_task: dict[str, list[int]] = {}
        for i in spread_indices(len(data), 64):  # evenly spaced over the manifest, so every task is in
            by_task.setdefault(data.examples[i].task, []).append(i)
        dev = self.loop.acc.device
        sums: dict[str, dict[str, float | torch.Tensor]] = {}
        try:
            for task, idx in by_task.items():
                s = sums.setdefault(task, {})
                for j in range(0, len(idx), 16):
                    batch = {k: v.to(dev) for k, v in self.collate([data[(0, i)] for i in idx[j:j + 16]]).items()}
                    codes_in = self.view.codec.latent_to_codes(batch["cond"].transpose(1, 2).float(), self.n_q)
                    r = input_use(net, batch, codes_in)
                    n = batch["targets"].shape[0]
                    s["items"] = s.get("items", 0) + n
                    s["loss"] = s.get("loss", 0.0) + float(r["loss"]) * n
                    for key in ("correct", "count", "correct_prev", "count_prev", "correct_copy"):
                        s[key] = s.get(key, 0) + r[key].cpu()
                    if "loss_shuf" in r:
                        s["shuf_items"] = s.get("shuf_items", 0) + n
                        s["loss_shuf"] = s.get("loss_shuf", 0.0) + float(r["loss_shuf"]) * n
                        s["correct_shuf"] = s.get("correct_shuf", 0) + r["correct_shuf"].cpu()
                        s["count_shuf"] = s.get("count_shuf", 0) + r["count"].cpu()
        finally:
            net.train()
        if not sums:
            return {}

        def total(key):
            return sum(v[key] for v in sums.values() if key in v)

        out = {"val/loss": total("loss") / total("items")}
        out.update({f"val/loss_{x}": v["loss"] / v["items"] for x, v in sums.items()})
        for x, v in sums.items():
            out[f"val/acc_{x}"] = float(v["correct"].sum() / v["count"].sum().clamp_min(1))
            if "correct_shuf" in v:
                out[f"val/acc_shuf_{x}"] = float(v["correct_shuf"].sum() / v["count_shuf"].sum().clamp_min(1))
        for name, num, den in (("acc", "correct", "count"), ("acc_copy", "correct_copy", "count"),
                               ("acc_prev", "correct_prev", "count_prev"), ("acc_shuf", "correct_shuf", "count_shuf")):
            if any(num in v for v in sums.values()):
                ratio = total(num) / torch.as_tensor(total(den)).clamp_min(1)
                out.update({f"val/{name}_q{k + 1}": float(ratio[k]) for k in range(self.n_q)})
        if any("loss_shuf" in v for v in sums.values()):
            out["val/loss_shuf"] = total("loss_shuf") / total("shuf_items")
        return {k: float(v) for k, v in out.items()}

    def export(self, directory: Path, dtype: str) -> None:
        """The LM folder (:meth:`CodecLM.save_pretrained`: weights, config, the codec's name and fingerprint)."""
        settings = {"codec": codec_spec(self.ecfg["codec"]), "n_q": self.n_q, "ref_frames": int(self.ecfg["ref_frames"]),
                    "chunk_frames": int(self.ecfg["crop_frames"]), "layout": LAYOUT}
        CodecLM(self.view.codec, self.loop.acc.unwrap_model(self.net), settings).save_pretrained(directory)
        (directory / "training.json").write_text(json.dumps(
            {"step": self.loop.state.step, "data": self.cfg.get("data"), "lm": self.ecfg}, indent=2) + "\n")
