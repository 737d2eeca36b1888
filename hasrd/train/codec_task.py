"""The codec task (``task: codec``, the default): a codec trained by reconstruction, semantic
distillation and (after ``disc_start``) a GAN.

One step: (after ``disc_start``) a discriminator update on detached generated audio, then a
generator update on the weighted sum of the named losses. Weights live in one dict
(``loss_weights``); a weight of 0 computes and logs a term without training on it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..codecs import Codec, TokenCodec, build_codec
from ..codecs.persist import STORAGE_DTYPES
from ..decoders import Discriminator
from ..io.manifest import read_manifest
from ..losses import (
    MultiScaleMelLoss,
    PhaseLoss,
    StftLoss,
    anchor_loss,
    discriminator_loss,
    feature_l1_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    semantic_regression_loss,
    semantic_unit_loss,
)
from ..losses.perceptual import PesqLoss, StoiLoss
from ..losses.pitch import pitch_losses, yin_track
from .augment import ChannelAugment
from .config import TrainingError
from .data import CropConfig, CropDataset, collate_crops
from .task import Parts, Task, pesq_wb, spread
from .teacher_setup import prepare_teacher
from .warm_start import warm_start

#: optional waveform losses with a settings section: loss_weights name -> (class, section)
SECTION_LOSSES = {"phase": (PhaseLoss, "phase_loss"), "stft": (StftLoss, "stft_loss")}
#: optional waveform losses with no settings: loss_weights name -> class (built with the sample rate)
RATE_LOSSES = {"stoi": StoiLoss, "pesq": PesqLoss}


def read_sources(spec) -> list:
    """The entries of ``data.train`` / ``data.val``: one source (a manifest, a folder, a corpus
    spec) or a list of them, concatenated in order (e.g. speech and sound events)."""
    sources = spec if isinstance(spec, (list, tuple)) else [spec]
    entries: list = []
    for source in sources:
        entries.extend(read_manifest(source))
    return entries


def waveform_losses(cfg: dict, weights: dict, sample_rate: int, segment: int) -> nn.ModuleDict:
    """The optional waveform terms that ``loss_weights`` names (decoded crop against the input
    crop): the phase and linear STFT losses from their settings sections, stand-ins for the
    evaluator's STOI and PESQ. Any error is one line naming the section."""
    losses = nn.ModuleDict()
    for name, (cls, section) in SECTION_LOSSES.items():
        if name in weights:
            try:
                losses[name] = cls(**cfg.get(section, {}))
            except ImportError as exc:
                raise TrainingError(str(exc)) from None
            except (TypeError, ValueError) as exc:  # e.g. an unknown key, an empty n_ffts, a bad term
                msg = str(exc)
                raise TrainingError(msg if msg.startswith(section) else f"{section}: {msg}") from None
    try:
        for name, cls in RATE_LOSSES.items():
            if name in weights:
                losses[name] = cls(sample_rate)
    except ImportError as exc:
        raise TrainingError(str(exc)) from None
    # losses that analyse a minimum length at once (STOI's 384 ms segments, the STFT loss's largest window)
    for name, loss in losses.items():
        if segment < getattr(loss, "min_samples", 0):
            where = f" ({SECTION_LOSSES[name][1]})" if name in SECTION_LOSSES else ""
            raise TrainingError(f"loss_weights.{name}{where} needs crops of {loss.min_samples} samples at least "
                                f"(the span it analyses at once); train.segment_seconds gives {segment}")
    return losses


def generator_pass(disc, real_audio: torch.Tensor, fake_audio: torch.Tensor, autocast):
    """The discriminator's view for the generator update: ``(real features, fake features)``.

    Only the generator learns from this pass, so it runs on the unwrapped discriminator (no
    DDP gradient sync), with the real half under ``no_grad`` and the discriminator's weights
    frozen: backward then computes gradients for the fake audio only, not for the
    discriminator's weights (about a third of the discriminator's cost per step saved).
    """
    flags = [p.requires_grad for p in disc.parameters()]
    disc.requires_grad_(False)
    try:
        with autocast():
            with torch.no_grad():
                real = disc(real_audio)
            fake = disc(fake_audio)
    finally:
        for p, f in zip(disc.parameters(), flags):
            p.requires_grad_(f)
    return real, fake


class CodecTask(Task):
    """A codec's set-up, GAN step, validation (mel distance, PESQ) and ``save_pretrained`` export."""

    export_dtypes = tuple(STORAGE_DTYPES)
    exports = "a codec"

    def build(self, resume: bool) -> Parts:
        loop, acc, t = self.loop, self.loop.acc, self.loop.t
        self.weights = {k: float(v) for k, v in (self.cfg.get("loss_weights") or {}).items()}
        data_cfg = self.cfg.get("data") or {}
        if not data_cfg.get("train"):
            raise TrainingError("config has no data.train (a directory or a JSONL/TSV manifest, or a list of them)")
        if "model" not in self.cfg:
            raise TrainingError("config has no model section (see codec_configs/README.md)")
        entries = read_sources(data_cfg["train"])
        try:
            codec: Codec = build_codec(self.cfg["model"], strict=True)  # a key no codec code reads is refused
        except ValueError as exc:
            if "unknown setting" not in str(exc):
                raise
            raise TrainingError(str(exc)) from None
        if not (resume and loop.latest_checkpoint() is not None):  # a checkpoint brings its own weights
            loaded = warm_start(codec, Path(t.init_from), t.init_only, acc.print) if t.init_from else None
            try:
                note = codec.prepare_training(loaded)  # e.g. a continuous codec's stage-2 anchor
            except ValueError as exc:
                raise TrainingError(str(exc)) from None
            if note:
                acc.print(note)
        self.teacher = prepare_teacher(self.cfg, codec, entries, loop.out, acc, t.kmeans_frames, t.seed)
        self.sample_rate = codec.sample_rate
        seg = int(round(t.segment_seconds * codec.sample_rate / codec.hop_length)) * codec.hop_length
        if seg <= 0:
            raise TrainingError(f"train.segment_seconds={t.segment_seconds}: shorter than one codec frame")
        dataset = self._dataset(entries, codec, seg)
        for m in codec.modules():
            if hasattr(m, "dead_window"):
                m.dead_window = t.dead_code_window
        self.val_entries = spread(read_sources(data_cfg["val"]), t.val_files) if data_cfg.get("val") else []
        disc = Discriminator(**self.cfg.get("discriminator", {}))
        self.mel_loss = MultiScaleMelLoss(codec.sample_rate, **self.cfg.get("mel_loss", {}))
        self.wave_losses = waveform_losses(self.cfg, self.weights, codec.sample_rate, seg)
        opt_g = loop.optimizer([p for p in codec.parameters() if p.requires_grad])
        opt_d = loop.optimizer(disc.parameters(), lr=t.disc_lr or t.lr)
        if t.compile:
            codec.compile()  # nn.Module.compile: __call__ compiled, parameter names unchanged
            acc.print("train.compile: the codec's forward runs through torch.compile")
        self.codec, self.disc, self.opt_g, self.opt_d = acc.prepare(codec, disc, opt_g, opt_d)
        self.mel_loss.to(acc.device)
        self.wave_losses.to(acc.device)
        acc.print(f"training on {acc.device} with {acc.num_processes} processes "
                  f"({acc.distributed_type.value}); codec {codec.codec_name}, "
                  f"{sum(p.numel() for p in codec.parameters()) / 1e6:.2f} M parameters")
        return Parts(dataset, collate_crops, [self.codec], t.num_workers)

    def _dataset(self, entries: list, codec, seg: int) -> CropDataset:
        t, teacher = self.loop.t, self.teacher
        try:
            crop = CropConfig(codec.sample_rate, seg, codec.hop_length, t.loudness_db, t.gain_jitter_db, t.seed,
                              speed_factors=t.speed_perturb or (), augment=ChannelAugment.from_config(t.augment))
            utterance_rate = (teacher.module.sample_rate if teacher.module is not None and teacher.context == "utterance"
                              else None)
            return CropDataset(entries, crop, teacher_cache=teacher.cache, utterance_rate=utterance_rate)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None

    def batch_items(self, batch) -> int:
        return (batch if isinstance(batch, torch.Tensor) else batch["audio"]).shape[0]

    def _weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for name, value in terms.items():
            w = self.weights.get(name, 0.0)
            if w:
                total = value * w if total is None else total + value * w
        if total is None:
            raise TrainingError("every loss weight is 0: nothing to train")
        return total

    def _idle(self, terms: dict[str, torch.Tensor], out) -> torch.Tensor:
        """0 times every output that no weighted term uses (a term of weight 0, a semantic head
        with no teacher): under DDP each output must reach the loss, or the gradient reduction
        waits for parameters that never get one ("Expected to have finished reduction")."""
        idle = [v for k, v in terms.items() if not self.weights.get(k, 0.0) and v.requires_grad]
        if not self.teacher.active:
            idle += [v for v in out.semantic.values() if isinstance(v, torch.Tensor) and v.requires_grad]
        return sum((0.0 * v.float().sum() for v in idle), torch.zeros((), device=self.loop.acc.device))

    def _disc_step(self, batch: torch.Tensor, audio: torch.Tensor) -> dict:
        """The discriminator's update on the batch and the detached generated audio."""
        acc = self.loop.acc
        with acc.autocast():
            d_out = self.disc(torch.cat([batch, audio.detach()]))
        d_real = [[f[: batch.shape[0]] for f in fs] for fs in d_out]
        d_fake = [[f[batch.shape[0]:] for f in fs] for fs in d_out]
        d_loss = discriminator_loss(d_real, d_fake)
        logs = self.loop.update(d_loss, self.disc, self.opt_d, "disc", count_bad=False) or {}
        logs["loss/disc"] = d_loss.detach()
        return logs

    def _semantic_terms(self, out, batch, extra) -> dict[str, torch.Tensor]:
        if not self.teacher.active:
            return {}
        acc = self.loop.acc
        target = self.teacher.targets(acc.unwrap_model(self.codec), batch, extra, out.codes.shape[-1], acc.device)
        terms = {}
        if "features" in out.semantic:
            terms["sem_reg"] = semantic_regression_loss(out.semantic["features"], target["features"])
            if "sem_l1" in self.weights:
                terms["sem_l1"] = feature_l1_loss(out.semantic["features"], target["features"])
        if "anchor_features" in out.semantic:
            terms["anchor"] = anchor_loss(out.semantic["anchor_features"], target["features"])
        if "unit_logits" in out.semantic and "units" in target:
            terms["sem_ce"] = semantic_unit_loss(out.semantic["unit_logits"], target["units"])
        return terms

    def step(self, batch) -> dict:
        acc, step = self.loop.acc, self.loop.state.step
        extra = {}
        if isinstance(batch, dict):
            extra = batch
            batch = batch["audio"].to(acc.device)
        out = self.codec(batch)
        if out.audio is not None and out.audio.dtype != torch.float32:
            out.audio = out.audio.float()  # under bf16/fp16 autocast: the losses compare in float32
        # out.audio is None while a continuous codec trains its stage 1 (no waveform decoder yet)
        use_disc = out.audio is not None and step >= self.loop.t.disc_start and (
            self.weights.get("adv", 0) or self.weights.get("feat", 0))
        logs = self._disc_step(batch, out.audio) if use_disc else {}
        terms: dict[str, torch.Tensor] = {}
        if out.audio is not None:
            terms["mel"] = self.mel_loss(out.audio, batch)
            for name, loss in self.wave_losses.items():
                terms[name] = loss(out.audio, batch)
        terms.update(out.losses)  # vq (token codecs), anchor_l2 (continuous stage 2)
        if out.pitch:  # a decoder that renders pitch: F0 and voicing against the input's own
            unwrapped = acc.unwrap_model(self.codec)
            f0, voiced = yin_track(batch, unwrapped.sample_rate, unwrapped.hop_length)
            terms.update(pitch_losses(out.pitch["f0"], out.pitch["voiced_logit"], f0, voiced))
        terms.update(self._semantic_terms(out, batch, extra))
        if use_disc:
            real, fake = generator_pass(acc.unwrap_model(self.disc), batch, out.audio, acc.autocast)
            terms["adv"] = generator_adversarial_loss(fake)
            terms["feat"] = feature_matching_loss(real, fake)
        total = self._weighted(terms)
        if acc.num_processes > 1:
            total = total + self._idle(terms, out)
        grad = self.loop.update(total, self.codec, self.opt_g, "gen")
        if grad is None:
            return {"skipped": 1.0}
        logs.update(grad)
        logs["loss/total"] = total.detach()
        logs.update({f"loss/{k}": v.detach() for k, v in terms.items()})
        logs.update({f"codebook/{k}": v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.metrics.items()})
        return logs

    # ------------------------------------------------------------------ validation and export
    def validation_metrics(self) -> set[str]:
        if not self.val_entries or not self.loop.t.val_every:
            return set()
        codec = self.loop.acc.unwrap_model(self.codec)
        if not isinstance(codec, TokenCodec) and codec.stage == 1:
            return {"val/sem_reg"} if self.teacher.module is not None else set()
        return {"val/mel", "val/pesq_wb"}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mel distance and PESQ (wide-band) on a few held-out files, all codebooks (main process)."""
        from ..io.entry import load_entry

        if not self.val_entries or not self.loop.acc.is_main_process:
            return {}
        codec = self.loop.acc.unwrap_model(self.codec)
        if not isinstance(codec, TokenCodec) and codec.stage == 1:
            return self._validate_features(codec)
        codec.eval()
        mels, pesqs, samples = [], [], []
        try:
            for e in self.val_entries:
                audio, _ = load_entry(e, codec.sample_rate)
                x = torch.from_numpy(audio[:, : codec.sample_rate * 6]).unsqueeze(0).to(self.loop.acc.device)
                # the codec as sent: every codebook, or a continuous latent as its files store it
                y = codec.decode_latent(codec.encode_to_latent(x, quantize=True))[..., : x.shape[-1]]
                mels.append(float(self.mel_loss(y, x)))
                pesqs.append(pesq_wb(x[0, 0].cpu().numpy(), y[0, 0].cpu().numpy(), codec.sample_rate))
                samples.append(y[0, 0].cpu().numpy())
        finally:
            codec.train()
        self.val_samples = samples
        out = {"val/mel": float(np.mean(mels))}
        valid = [p for p in pesqs if p is not None]
        if valid:
            out["val/pesq_wb"] = float(np.mean(valid))
        return out

    @torch.no_grad()
    def _validate_features(self, codec) -> dict[str, float]:
        """A continuous codec's stage 1 decodes no audio yet: held-out teacher-feature regression."""
        from ..io.entry import load_entry

        self.val_samples = []
        if self.teacher.module is None:
            return {}
        codec.eval()
        values = []
        try:
            for e in self.val_entries:
                audio, _ = load_entry(e, codec.sample_rate)
                x = torch.from_numpy(audio[:, : codec.sample_rate * 6]).unsqueeze(0).to(self.loop.acc.device)
                x = codec.pad_to_hop(x)
                out = codec(x)
                target = self.teacher.module.targets(x, out.codes.shape[-1], codec.frame_rate)
                values.append(float(semantic_regression_loss(out.semantic["features"], target["features"])))
        finally:
            codec.train()
        return {"val/sem_reg": float(np.mean(values))} if values else {}

    def export(self, directory: Path, dtype: str) -> None:
        """``save_pretrained`` of the current generator weights, floating-point weights stored as ``dtype``."""
        self.loop.acc.unwrap_model(self.codec).save_pretrained(directory, dtype=dtype)
