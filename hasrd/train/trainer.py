"""The GAN training loop on Hugging Face Accelerate: one code path for 1 CPU, 1 GPU or many nodes.

One step: (after ``disc_start``) a discriminator update on detached generated audio, then a
generator update on the weighted sum of the named losses. Weights live in one dict
(``loss_weights``); a weight of 0 computes and logs a term without training on it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..codecs import Codec, build_codec
from ..codecs.base import STORAGE_DTYPES
from ..config import dump_config
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
from ..nn.framerate import FrameRateError
from ..teachers import KMeansUnits, build_teacher
from ..teachers.cache import TeacherCache, data_root, kmeans_frames, kmeans_sha256
from ..teachers.targets import on_the_fly_targets
from .augment import ChannelAugment
from .data import CropConfig, CropDataset, StepBatchSampler, collate_crops

DEFAULT_TRAIN = {
    "seed": 0,
    "batch_size": 8,
    "segment_seconds": 1.0,
    "max_steps": 1000,
    "lr": 3e-4,
    "disc_lr": None,  # None: same as lr
    "betas": [0.8, 0.99],
    "lr_decay": 0.99999,  # multiplicative per step, after warm-up
    "warmup_steps": 0,
    "anneal_start": None,  # step where a cosine anneal of the lr to 0 begins (on top of lr_decay)
    "anneal_steps": 0,  # its length in steps; the lr is 0 from anneal_start + anneal_steps on
    "disc_start": 0,
    "grad_clip": 1000.0,
    "ckpt_every": 500,
    "keep_last": 3,
    "log_every": 20,
    "val_every": 0,
    "val_files": 4,
    "audio_every": 0,  # tensorboard audio samples every N steps (0: at validation)
    "num_workers": 0,
    "max_bad_steps": 10,
    "loudness_db": -20.0,
    "gain_jitter_db": 6.0,
    "speed_perturb": None,  # e.g. [0.9, 1.0, 1.1]: each crop plays one of these times faster
    "augment": None,  # e.g. {p_reverb: 0.3, p_eq: 0.5}: a random recording channel on each crop (train/augment.py)
    "kmeans_frames": 200000,  # teacher frames used to fit k-means units (when no kmeans file)
    "dead_code_window": 100,  # a code unused (by every process) for this many steps counts as dead
    "init_from": None,  # a save_pretrained folder whose weights start the run (warm start, fresh optimizer)
    "init_only": None,  # warm-start only these parts (e.g. [encoder, quantizer, semantic_head]): a new decoder
    "best_metric": None,  # e.g. val/loss: export the weights of its best validation to RUN/best (best.json says which)
    "best_mode": "min",  # min | max: whether a lower or a higher best_metric is better
    "patience": 0,  # stop (checkpoint and export) after this many validations without a new best (0: never)
    "max_minutes": None,  # stop (checkpoint and export, as at max_steps) after this many minutes of this session's loop
    "mixed_precision": None,  # no | bf16 | fp16, passed to the Accelerator (None: as accelerate launch --mixed_precision says)
    "compile": False,  # torch.compile the codec's forward (in place: checkpoints and exports unchanged)
}



def read_sources(spec) -> list:
    """The entries of ``data.train`` / ``data.val``: one source (a manifest, a folder, a corpus
    spec) or a list of them, concatenated in order (e.g. speech and sound events)."""
    sources = spec if isinstance(spec, (list, tuple)) else [spec]
    entries: list = []
    for source in sources:
        entries.extend(read_manifest(source))
    return entries


def spread_indices(n_items: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_items)``, first and last included (all of them
    when there are no more than ``n``): a validation subset that holds some of every part."""
    if n <= 0:
        return []
    if n_items <= n:
        return list(range(n_items))
    return np.linspace(0, n_items - 1, n).round().astype(int).tolist()


def spread(entries: list, n: int) -> list:
    """``n`` entries spread evenly over ``entries`` (:func:`spread_indices`), so a validation set
    drawn from several sources holds some of each."""
    return [entries[i] for i in spread_indices(len(entries), n)]


class TrainingError(RuntimeError):
    """Training cannot go on (too many non-finite losses, bad data, ...)."""


@dataclass
class TrainState:
    """The scalar state saved with every checkpoint (registered with Accelerate)."""

    step: int = 0
    bad_steps_in_a_row: int = 0
    best_value: float = math.nan  # train.best_metric's best value so far (nan: none yet)
    best_step: int = -1
    vals_since_best: int = 0  # validations since the best one (train.patience)

    def state_dict(self) -> dict:
        return {"step": self.step, "bad_steps_in_a_row": self.bad_steps_in_a_row, "best_value": self.best_value,
                "best_step": self.best_step, "vals_since_best": self.vals_since_best}

    def load_state_dict(self, d: dict) -> None:
        self.step, self.bad_steps_in_a_row = int(d["step"]), int(d["bad_steps_in_a_row"])
        # checkpoints from before best-keeping have none of these
        self.best_value = float(d.get("best_value", math.nan))
        self.best_step, self.vals_since_best = int(d.get("best_step", -1)), int(d.get("vals_since_best", 0))


def _lr_lambda(t: dict):
    """The lr multiplier per step from the ``train`` config: linear warm-up, then ``lr_decay``
    per step, times a cosine from 1 to 0 over ``anneal_steps`` from ``anneal_start`` on.

    A pure function of the step and the config, so a run resumed with an anneal added (starting
    at or after the resumed step) continues at the same lr: the factor is 1 up to ``anneal_start``.
    """
    warmup, decay = int(t["warmup_steps"]), float(t["lr_decay"])
    start, length = t.get("anneal_start"), int(t.get("anneal_steps") or 0)
    if start is not None and (int(start) < 0 or length <= 0):
        raise TrainingError(f"train.anneal_start={start} needs anneal_start >= 0 and anneal_steps > 0 "
                            f"(got anneal_steps={length})")

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        factor = decay ** max(0, step - warmup)
        if start is not None and step > int(start):
            done = min(1.0, (step - int(start)) / length)
            factor *= 0.5 * (1.0 + math.cos(math.pi * done))
        return factor

    return f


def _max_seconds(t: dict) -> float | None:
    """``train.max_minutes`` in seconds (None: no wall-clock limit); a limit that is not > 0 is an error."""
    limit = t.get("max_minutes")
    if limit is None:
        return None
    try:
        seconds = 60.0 * float(limit)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or math.isinf(seconds):
        raise TrainingError(f"train.max_minutes={limit}: a wall-clock limit must be a number of minutes > 0 (or null)")
    return seconds


class Trainer:
    """Builds everything from a resolved config and runs the loop.

    Args:
        cfg: the whole config (``model``, ``teacher``, ``discriminator``, ``loss_weights``,
            ``train``, ``data``).
        output_dir: run folder: checkpoints, logs, exported model.
        accelerator: an ``accelerate.Accelerator`` (made by :func:`run` from the launch options).
    """

    #: the storage dtypes :meth:`export` writes (``train.py --export-dtype`` is checked against
    #: them with :meth:`check_export_dtype` before :meth:`setup` touches data, teacher or run folder)
    EXPORT_DTYPES: tuple[str, ...] = tuple(STORAGE_DTYPES)
    EXPORTS = "a codec"  #: what :meth:`export` writes, for error messages

    @classmethod
    def check_export_dtype(cls, dtype: str) -> None:
        """Raise :class:`TrainingError` unless :meth:`export` can store weights as ``dtype``."""
        if dtype not in cls.EXPORT_DTYPES:
            raise TrainingError(f"--export-dtype {dtype}: {cls.EXPORTS} is exported as "
                                f"{' or '.join(cls.EXPORT_DTYPES)} only")

    def __init__(self, cfg: dict, output_dir: str | Path, accelerator):
        self.cfg = cfg
        self.tcfg = {**DEFAULT_TRAIN, **cfg.get("train", {})}
        self.out = Path(output_dir)
        self.acc = accelerator
        self.weights = {k: float(v) for k, v in cfg.get("loss_weights", {}).items()}
        self.state = TrainState()
        self._stop_signal: str | None = None

    # ------------------------------------------------------------------ set-up
    def setup(self, resume: bool) -> None:
        acc, t = self.acc, self.tcfg
        from accelerate.utils import set_seed

        _lr_lambda(t)  # a bad schedule is an error before any data or teacher work
        _max_seconds(t)  # so is a bad wall-clock limit
        set_seed(int(t["seed"]), device_specific=True)
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(dump_config(self.cfg))
        acc.wait_for_everyone()

        data_cfg = self.cfg.get("data", {})
        if not data_cfg.get("train"):
            raise TrainingError("config has no data.train (a directory or a JSONL/TSV manifest, or a list of them)")
        entries = read_sources(data_cfg["train"])
        self.codec: Codec = build_codec(self.cfg["model"])
        if not (resume and self.latest_checkpoint() is not None):  # a checkpoint brings its own weights
            loaded = self._warm_start(Path(t["init_from"]), t.get("init_only")) if t.get("init_from") else None
            try:
                note = self.codec.prepare_training(loaded)  # e.g. a continuous codec's stage-2 anchor
            except ValueError as exc:
                raise TrainingError(str(exc)) from None
            if note:
                acc.print(note)
        self.teacher = self._prepare_teacher(entries)
        seg = int(round(float(t["segment_seconds"]) * self.codec.sample_rate / self.codec.hop_length)) * self.codec.hop_length
        try:
            crop = CropConfig(self.codec.sample_rate, seg, self.codec.hop_length, t["loudness_db"], float(t["gain_jitter_db"]),
                              int(t["seed"]), speed_factors=t["speed_perturb"] or (),
                              augment=ChannelAugment.from_config(t["augment"]))
            utterance_rate = self.teacher.sample_rate if self.teacher is not None and self.teacher_context == "utterance" else None
            self.dataset = CropDataset(entries, crop, teacher_cache=self.teacher_cache, utterance_rate=utterance_rate)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        for m in self.codec.modules():
            if hasattr(m, "dead_window"):
                m.dead_window = int(t["dead_code_window"])
        self.val_entries = spread(read_sources(data_cfg["val"]), int(t["val_files"])) if data_cfg.get("val") else []

        self.disc = Discriminator(**self.cfg.get("discriminator", {}))
        self.mel_loss = MultiScaleMelLoss(self.codec.sample_rate, **self.cfg.get("mel_loss", {}))
        # optional waveform terms (decoded crop against the input crop), each built only when
        # loss_weights names it: the phase loss, and stand-ins for the evaluator's STOI and PESQ
        self.wave_losses = nn.ModuleDict()
        # losses with a settings section: built from it, any error named after the section
        sections = {"phase": (PhaseLoss, "phase_loss"), "stft": (StftLoss, "stft_loss")}
        for name, (cls, section) in sections.items():
            if name in self.weights:
                try:
                    self.wave_losses[name] = cls(**self.cfg.get(section, {}))
                except ImportError as exc:
                    raise TrainingError(str(exc)) from None
                except (TypeError, ValueError) as exc:  # e.g. an unknown key, an empty n_ffts, a bad term
                    msg = str(exc)
                    raise TrainingError(msg if msg.startswith(section) else f"{section}: {msg}") from None
        try:
            for name, cls in (("stoi", StoiLoss), ("pesq", PesqLoss)):
                if name in self.weights:
                    self.wave_losses[name] = cls(self.codec.sample_rate)
        except ImportError as exc:
            raise TrainingError(str(exc)) from None
        # losses that analyse a minimum length at once (STOI's 384 ms segments, the STFT loss's largest window)
        for name, loss in self.wave_losses.items():
            if seg < getattr(loss, "min_samples", 0):
                where = f" ({sections[name][1]})" if name in sections else ""
                raise TrainingError(f"loss_weights.{name}{where} needs crops of {loss.min_samples} samples at least "
                                    f"(the span it analyses at once); train.segment_seconds gives {seg}")
        betas = tuple(t["betas"])
        gen_params = [p for p in self.codec.parameters() if p.requires_grad]
        self.opt_g = torch.optim.AdamW(gen_params, lr=float(t["lr"]), betas=betas)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=float(t["disc_lr"] or t["lr"]), betas=betas)
        lam = _lr_lambda(t)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lam)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lam)

        if t.get("compile"):
            self.codec.compile()  # nn.Module.compile: __call__ compiled, parameter names unchanged
            acc.print("train.compile: the codec's forward runs through torch.compile")
        (self.codec, self.disc, self.opt_g, self.opt_d, self.sched_g, self.sched_d) = self.acc.prepare(
            self.codec, self.disc, self.opt_g, self.opt_d, self.sched_g, self.sched_d
        )
        self.mel_loss.to(acc.device)
        self.wave_losses.to(acc.device)
        if self.teacher is not None:
            self.teacher.to(acc.device)
        acc.register_for_checkpointing(self.state)

        acc.print(f"training on {acc.device} with {acc.num_processes} processes "
                  f"({acc.distributed_type.value}); codec {acc.unwrap_model(self.codec).codec_name}, "
                  f"{sum(p.numel() for p in self.codec.parameters()) / 1e6:.2f} M parameters")
        self._resume_and_load(resume, collate_crops, int(t["num_workers"]))

    def _resume_and_load(self, resume: bool, collate_fn, num_workers: int) -> None:
        """Load the latest checkpoint (with ``resume``), then build ``self.loader`` over
        ``self.dataset`` from the current step: the end of every trainer's set-up."""
        acc, t = self.acc, self.tcfg
        if resume:
            ckpt = self.latest_checkpoint()
            if ckpt is None:
                acc.print(f"no checkpoint in {self.out}; starting from step 0")
            else:
                acc.load_state(str(ckpt))
                acc.print(f"resumed from {ckpt} at step {self.state.step}")
        sampler = StepBatchSampler(len(self.dataset), int(t["batch_size"]), int(t["seed"]),
                                   acc.process_index, acc.num_processes, self.state.step)
        # A private generator: creating the loader's iterator must not draw from the global RNG
        # that the checkpoint restored (it would shift quantizer dropout after a resume).
        self.loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                                 persistent_workers=num_workers > 0,
                                 generator=torch.Generator().manual_seed(int(t["seed"])))

    def _warm_start(self, directory: Path, parts: list[str] | None = None) -> set[str]:
        """Start from a ``save_pretrained`` folder's weights (same architecture; optimizer state fresh).

        Used to continue training across machines that keep no checkpoints: the exported model is
        small enough to commit, the optimizer state is not. Codebooks come with their weights, so
        k-means initialisation is not run again. Also how a continuous codec's stage 2 starts from
        its stage-1 export (``model.stage`` is not part of the architecture, see :func:`_arch`).

        ``parts`` (``train.init_only``): load only these top-level parts (e.g. ``encoder``,
        ``quantizer``, ``semantic_head``) and require only their config sections to match; the
        others (a new ``decoder``) start from scratch. Returns the names of the weights loaded.
        """
        from safetensors.torch import load_file

        from ..codecs.base import CONFIG_NAME, WEIGHTS_NAME

        if not (directory / WEIGHTS_NAME).is_file():
            raise TrainingError(f"train.init_from: {directory} has no {WEIGHTS_NAME}")
        stored = json.loads((directory / CONFIG_NAME).read_text())["model"]
        mine = self.codec.config
        own = dict(self.codec.named_children())
        if parts:
            unknown = set(parts) - set(own)
            if unknown:
                raise TrainingError(f"train.init_only names unknown parts {sorted(unknown)}; use {sorted(own)}")
            skip = set(own) - set(parts)  # config sections of the parts not loaded need not match
            stored = {k: v for k, v in stored.items() if k not in skip}
            mine = {k: v for k, v in mine.items() if k not in skip}
        if _arch(stored) != _arch(mine):
            raise TrainingError(f"train.init_from: {directory} holds a different architecture than model")
        state = load_file(str(directory / WEIGHTS_NAME))
        if parts:
            state = {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}
        missing, unexpected = self.codec.load_state_dict(state, strict=False)
        # heads the decoder names new (a pitch head gained with decoder.source) start from scratch
        new = tuple(f"decoder.{p}" for p in self.codec.decoder.warm_start_new)
        missing = [k for k in missing if not self.codec.is_optional_weight(k) and not k.startswith(new)
                   and (not parts or k.split(".", 1)[0] in parts)]
        if missing or unexpected:
            raise TrainingError(f"train.init_from: {directory}: weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.acc.print(f"warm start from {directory}" + (f" ({', '.join(parts)})" if parts else ""))
        return set(state)

    def _prepare_teacher(self, entries):
        tcfg = dict(self.cfg.get("teacher") or {})
        self.teacher_cache, self.teacher_context = None, tcfg.pop("context", "utterance")
        if not tcfg:
            return None
        if self.teacher_context not in ("utterance", "crop"):
            raise TrainingError(f"teacher.context must be 'utterance' or 'crop', not {self.teacher_context!r}")
        n_units = tcfg.pop("n_units", None)
        cache_dir = tcfg.pop("cache", None)
        if cache_dir:
            self.teacher_cache = self._open_teacher_cache(Path(cache_dir), tcfg, n_units, entries)
            self._check_heads(self.teacher_cache, self.teacher_cache.n_units if self.teacher_cache.use_units else None)
            return None
        teacher = build_teacher(tcfg)
        if n_units and teacher.n_units is None:
            path = self.out / "teacher_kmeans.safetensors"
            if self.acc.is_main_process and not path.exists():
                self.acc.print(f"fitting {n_units} k-means teacher units on the training set ...")
                km = KMeansUnits.fit(self._teacher_frames(teacher, entries), int(n_units), seed=int(self.tcfg["seed"]))
                km.save(path)
            self.acc.wait_for_everyone()
            teacher.set_kmeans(KMeansUnits.load(path))
        self._check_heads(teacher, teacher.n_units)
        if self.teacher_context == "utterance":
            self._check_frame_rates(teacher.frame_rate)
        return teacher

    def _check_frame_rates(self, teacher_rate: float) -> None:
        """Utterance-level targets slice whole teacher frames: a crop (codec frames) must be whole teacher frames."""
        ratio = teacher_rate / self.codec.frame_rate
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise TrainingError(f"the teacher's {teacher_rate:g} Hz frames are not a whole multiple of the codec's "
                                f"{self.codec.frame_rate:g} Hz: use teacher.context: crop")

    def _check_heads(self, teacher, n_units) -> None:
        head_units = self.cfg["model"].get("semantic_head", {}).get("n_units", 0)
        if head_units and n_units != head_units:
            raise TrainingError(f"model.semantic_head.n_units={head_units} but the teacher has {n_units} units")
        head_dim = self.cfg["model"].get("semantic_head", {}).get("dim", 0)
        if head_dim and head_dim != teacher.dim:
            raise TrainingError(f"model.semantic_head.dim={head_dim} but the teacher's features have {teacher.dim}")

    def _open_teacher_cache(self, directory: Path, tcfg: dict, n_units, entries) -> TeacherCache:
        """A cache built by ``python -m hasrd.teachers.cache`` for this teacher and data (else an error)."""
        if self.teacher_context != "utterance":
            raise TrainingError("teacher.cache holds utterance-level targets; it cannot be used with teacher.context: crop")
        cache = TeacherCache(directory)
        cache.check(tcfg, n_units)
        self._check_frame_rates(cache.frame_rate)
        if cache.use_units and not tcfg.get("kmeans"):  # the run's units are the cache's
            path, km = self.out / "teacher_kmeans.safetensors", cache.kmeans()
            if km is None:
                raise TrainingError(f"teacher.cache {directory} has no {directory / 'kmeans.safetensors'}")
            if self.acc.is_main_process and not path.exists():
                km.save(path)
            self.acc.wait_for_everyone()
            if kmeans_sha256(KMeansUnits.load(path)) != cache.kmeans_sha256:
                raise TrainingError(f"{path} (this run's k-means units) differs from the units in teacher.cache {directory}")
        cache.bind(entries, data_root(self.cfg["data"]["train"]))
        return cache

    def _teacher_frames(self, teacher, entries) -> np.ndarray:
        """Whole-utterance teacher frames to fit k-means units on (the targets' definition)."""
        return kmeans_frames(teacher, entries, int(self.tcfg["kmeans_frames"]), int(self.tcfg["seed"]))

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        found = []
        for p in self.out.glob("ckpt-*"):
            if p.is_dir() and p.name[5:].isdigit() and (p / "COMPLETE").exists():
                found.append(p)
        return sorted(found, key=lambda p: int(p.name[5:]))

    def latest_checkpoint(self) -> Path | None:
        c = self.checkpoints()
        return c[-1] if c else None

    def save_checkpoint(self) -> Path:
        """Save through Accelerate into a temp folder, then rename it: never half-written."""
        acc, step = self.acc, self.state.step
        final = self.out / f"ckpt-{step:08d}"
        tmp = self.out / f".tmp-ckpt-{step:08d}"
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "config.yaml").write_text(dump_config(self.cfg))
            (tmp / "COMPLETE").write_text(json.dumps({"step": step, "time": time.time()}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in self.checkpoints()[: -int(self.tcfg["keep_last"])]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def export(self, directory: str | Path | None = None, dtype: str = "float32") -> Path:
        """``save_pretrained`` of the current generator weights (main process), floating-point
        weights stored as ``dtype``."""
        self.check_export_dtype(dtype)
        directory = Path(directory or self.out / "export")
        if self.acc.is_main_process:
            self.acc.unwrap_model(self.codec).save_pretrained(directory, dtype=dtype)
        self.acc.wait_for_everyone()
        return directory

    # ------------------------------------------------------------------ the step
    def _weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for name, value in terms.items():
            w = self.weights.get(name, 0.0)
            if w:
                total = value * w if total is None else total + value * w
        if total is None:
            raise TrainingError("every loss weight is 0: nothing to train")
        return total

    def _any_process(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any of them."""
        value = torch.tensor([1.0 if flag else 0.0], device=self.acc.device)
        return bool(self.acc.gather(value).max() > 0)

    def _all_finite(self, value: torch.Tensor) -> bool:
        flag = torch.tensor([1.0 if bool(torch.isfinite(value).all()) else 0.0], device=self.acc.device)
        return bool(self.acc.gather(flag).min() > 0)  # every process skips together

    def _targets(self, batch, extra: dict, num_frames: int) -> dict[str, torch.Tensor]:
        """Teacher targets at the codec frame rate: cached, whole-utterance on the fly, or (context crop) of the crop."""
        unwrapped = self.acc.unwrap_model(self.codec)
        if "features" in extra:  # the cache (converted to the codec frame rate by the dataset)
            target = {k: extra[k].to(self.acc.device) for k in ("features", "units") if k in extra}
        elif "utterance" in extra:
            target = on_the_fly_targets(self.teacher, extra["utterance"], extra["start"].tolist(), batch.shape[-1],
                                        unwrapped.sample_rate, unwrapped.hop_length, device=self.acc.device)
        else:
            return self.teacher.targets(unwrapped.pad_to_hop(batch), num_frames, unwrapped.frame_rate)
        if target["features"].shape[1] != num_frames:
            raise FrameRateError(f"teacher targets have {target['features'].shape[1]} frames, the codec {num_frames}")
        return target

    def _generator_pass(self, real_audio: torch.Tensor, fake_audio: torch.Tensor):
        """The discriminator's view for the generator update: ``(real features, fake features)``.

        Only the generator learns from this pass, so it runs on the unwrapped discriminator (no
        DDP gradient sync), with the real half under ``no_grad`` and the discriminator's weights
        frozen: backward then computes gradients for the fake audio only, not for the
        discriminator's weights (about a third of the discriminator's cost per step saved).
        """
        disc = self.acc.unwrap_model(self.disc)
        flags = [p.requires_grad for p in disc.parameters()]
        disc.requires_grad_(False)
        try:
            with self.acc.autocast():
                with torch.no_grad():
                    real = disc(real_audio)
                fake = disc(fake_audio)
        finally:
            for p, f in zip(disc.parameters(), flags):
                p.requires_grad_(f)
        return real, fake

    def _update(self, loss: torch.Tensor, model, name: str) -> dict[str, float] | None:
        """One optimizer step of ``opt_g`` on ``loss``: the grad-norm log ``{"grad_norm/<name>": ...}``,
        or None when the loss or the gradient is not finite on some process (every process skips the
        step together; ``train.max_bad_steps`` of them in a row stop the run)."""
        acc, t = self.acc, self.tcfg
        if not self._all_finite(loss):
            return self._skip("loss")
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss)
        logs = {}
        if acc.sync_gradients:
            # a finite loss can still have a non-finite gradient (e.g. a power law at a silent
            # frame); stepping on it would leave NaN weights. The norm is of the synced gradients,
            # so every process skips together.
            norm = float(acc.clip_grad_norm_(model.parameters(), float(t["grad_clip"])))
            if not math.isfinite(norm):
                return self._skip("gradient")
            logs[f"grad_norm/{name}"] = norm
        self.state.bad_steps_in_a_row = 0
        self.opt_g.step()
        self.sched_g.step()
        return logs

    def _skip(self, what: str) -> None:
        """Skip this generator step (non-finite ``what``); ``train.max_bad_steps`` in a row stop the run."""
        self.state.bad_steps_in_a_row += 1
        self.acc.print(f"step {self.state.step}: non-finite {what}, step skipped ({self.state.bad_steps_in_a_row} in a row)")
        if self.state.bad_steps_in_a_row >= int(self.tcfg["max_bad_steps"]):
            raise TrainingError(f"{self.state.bad_steps_in_a_row} non-finite steps in a row; stopping")
        self.opt_g.zero_grad(set_to_none=True)
        return None

    def train_step(self, batch: torch.Tensor | dict) -> dict[str, float]:
        acc, t = self.acc, self.tcfg
        extra = {}
        if isinstance(batch, dict):
            extra = batch
            batch = batch["audio"].to(acc.device)
        codec, disc = self.codec, self.disc
        out = codec(batch)
        # out.audio is None while a continuous codec trains its stage 1 (no waveform decoder yet)
        use_disc = out.audio is not None and self.state.step >= int(t["disc_start"]) and (
            self.weights.get("adv", 0) or self.weights.get("feat", 0))
        logs: dict[str, float] = {}

        if use_disc:
            with acc.autocast():
                d_out = disc(torch.cat([batch, out.audio.detach()]))
            d_real = [[f[: batch.shape[0]] for f in fs] for fs in d_out]
            d_fake = [[f[batch.shape[0]:] for f in fs] for fs in d_out]
            d_loss = discriminator_loss(d_real, d_fake)
            if self._all_finite(d_loss):
                self.opt_d.zero_grad(set_to_none=True)
                acc.backward(d_loss)
                if acc.sync_gradients:
                    logs["grad_norm/disc"] = float(acc.clip_grad_norm_(disc.parameters(), float(t["grad_clip"])))
                self.opt_d.step()
                self.sched_d.step()
            logs["loss/disc"] = float(d_loss.detach())

        terms: dict[str, torch.Tensor] = {} if out.audio is None else {"mel": self.mel_loss(out.audio, batch)}
        if out.audio is not None:
            for name, loss in self.wave_losses.items():
                terms[name] = loss(out.audio, batch)
        terms.update(out.losses)  # vq (token codecs), anchor_l2 (continuous stage 2)
        if out.pitch:  # a decoder that renders pitch: F0 and voicing against the input's own
            unwrapped = self.acc.unwrap_model(codec)
            f0, voiced = yin_track(batch, unwrapped.sample_rate, unwrapped.hop_length)
            terms.update(pitch_losses(out.pitch["f0"], out.pitch["voiced_logit"], f0, voiced))
        if self.teacher is not None or self.teacher_cache is not None:
            target = self._targets(batch, extra, out.codes.shape[-1])
            if "features" in out.semantic:
                terms["sem_reg"] = semantic_regression_loss(out.semantic["features"], target["features"])
                if "sem_l1" in self.weights:
                    terms["sem_l1"] = feature_l1_loss(out.semantic["features"], target["features"])
            if "anchor_features" in out.semantic:
                terms["anchor"] = anchor_loss(out.semantic["anchor_features"], target["features"])
            if "unit_logits" in out.semantic and "units" in target:
                terms["sem_ce"] = semantic_unit_loss(out.semantic["unit_logits"], target["units"])
        if use_disc:
            real, fake = self._generator_pass(batch, out.audio)
            terms["adv"] = generator_adversarial_loss(fake)
            terms["feat"] = feature_matching_loss(real, fake)
        total = self._weighted(terms)
        grad = self._update(total, codec, "gen")
        if grad is None:
            return {"skipped": 1.0}
        logs.update(grad)
        logs["loss/total"] = float(total.detach())
        logs.update({f"loss/{k}": float(v.detach()) for k, v in terms.items()})
        logs.update({f"codebook/{k}": float(v) for k, v in out.metrics.items()})
        logs["lr"] = self.sched_g.get_last_lr()[0]
        return logs

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mel distance and PESQ (wide-band) on a few held-out files, all codebooks (main process)."""
        from ..io.entry import load_entry

        if not self.val_entries or not self.acc.is_main_process:
            return {}
        codec = self.acc.unwrap_model(self.codec)
        if codec.continuous and codec.stage == 1:
            return self._validate_features(codec)
        codec.eval()
        mels, pesqs, samples = [], [], []
        try:
            for e in self.val_entries:
                audio, _ = load_entry(e, codec.sample_rate)
                x = torch.from_numpy(audio[:, : codec.sample_rate * 6]).unsqueeze(0).to(self.acc.device)
                if codec.continuous:
                    y = codec.decode_latent(codec.encode_latent(x))[..., : x.shape[-1]]
                else:
                    y = codec.decode(codec.encode(x))[..., : x.shape[-1]]
                mels.append(float(self.mel_loss(y, x)))
                pesqs.append(_pesq(x[0, 0].cpu().numpy(), y[0, 0].cpu().numpy(), codec.sample_rate))
                samples.append(y[0, 0].cpu().numpy())
        finally:
            codec.train()
        self._val_samples = samples
        out = {"val/mel": float(np.mean(mels))}
        valid = [p for p in pesqs if p is not None]
        if valid:
            out["val/pesq_wb"] = float(np.mean(valid))
        return out

    @torch.no_grad()
    def _validate_features(self, codec) -> dict[str, float]:
        """A continuous codec's stage 1 decodes no audio yet: held-out teacher-feature regression."""
        from ..io.entry import load_entry

        self._val_samples = []
        if self.teacher is None:
            return {}
        codec.eval()
        values = []
        try:
            for e in self.val_entries:
                audio, _ = load_entry(e, codec.sample_rate)
                x = codec.pad_to_hop(torch.from_numpy(audio[:, : codec.sample_rate * 6]).unsqueeze(0).to(self.acc.device))
                out = codec(x)
                target = self.teacher.targets(x, out.codes.shape[-1], codec.frame_rate)
                values.append(float(semantic_regression_loss(out.semantic["features"], target["features"])))
        finally:
            codec.train()
        return {"val/sem_reg": float(np.mean(values))} if values else {}

    # ------------------------------------------------------------------ loop
    @staticmethod
    def _batch_items(batch) -> int:
        """Items in one process's batch (for the samples/s figure)."""
        return (batch if isinstance(batch, torch.Tensor) else batch["audio"]).shape[0]

    def _on_signal(self, signum, frame):
        self._stop_signal = signal.Signals(signum).name

    def _check_best(self) -> None:
        """``train.best_metric`` needs validations (``val_every`` > 0 and ``data.val``) and a known mode."""
        t = self.tcfg
        if not t.get("best_metric"):
            if int(t.get("patience") or 0):
                raise TrainingError("train.patience counts validations without a new best: it needs train.best_metric")
            return
        if not int(t["val_every"]) or not (self.cfg.get("data") or {}).get("val"):
            raise TrainingError(f"train.best_metric {t['best_metric']} needs validation: train.val_every > 0 and data.val")
        if str(t.get("best_mode", "min")) not in ("min", "max"):
            raise TrainingError(f"train.best_mode must be min or max, got {t.get('best_mode')!r}")

    def fit(self) -> None:
        acc, t = self.acc, self.tcfg
        max_steps = int(t["max_steps"])
        self._check_best()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        log_path = self.out / "metrics.jsonl"
        from tqdm.auto import tqdm

        bar = tqdm(total=max_steps, initial=self.state.step, disable=not acc.is_main_process,
                   dynamic_ncols=True, desc="train")
        it = iter(self.loader)
        t0, seen = time.time(), 0
        limit = _max_seconds(t)
        self.codec.train()
        try:
            while self.state.step < max_steps:
                batch = next(it)
                batch = batch.to(acc.device) if isinstance(batch, torch.Tensor) else batch
                logs = self.train_step(batch)
                self.state.step += 1
                seen += self._batch_items(batch) * acc.num_processes
                step = self.state.step
                # every process stops at the same step once any of them is past the limit
                time_up = limit is not None and self._any_process(time.time() - t0 >= limit)
                if step % int(t["log_every"]) == 0 or step == max_steps or time_up:
                    rate = seen / max(time.time() - t0, 1e-9)
                    logs["samples_per_s"] = rate
                    acc.log(logs, step=step)
                    if acc.is_main_process:
                        with open(log_path, "a") as fh:
                            fh.write(json.dumps({"step": step, **logs}) + "\n")
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items() if k in ("loss/mel", "loss/sem_ce", "loss/disc", "samples_per_s")})
                if int(t["val_every"]) and step % int(t["val_every"]) == 0:
                    val = self.validate()
                    if val and acc.is_main_process:
                        acc.log(val, step=step)
                        with open(log_path, "a") as fh:
                            fh.write(json.dumps({"step": step, **val}) + "\n")
                        self._log_audio(step)
                        acc.print(f"step {step}: " + ", ".join(f"{k}={v:.3f}" for k, v in val.items()))
                    patience_up = self._keep_best(val or {})
                else:
                    patience_up = False
                bar.update(1)
                if step % int(t["ckpt_every"]) == 0 or step == max_steps:
                    self.save_checkpoint()
                if self._stop_signal:
                    if step % int(t["ckpt_every"]):
                        self.save_checkpoint()
                    bar.close()
                    acc.print(f"{self._stop_signal}: checkpoint saved at step {step}; resume with --resume")
                    return
                if patience_up and step < max_steps:
                    if step % int(t["ckpt_every"]):
                        self.save_checkpoint()
                    bar.close()
                    self.export()
                    acc.print(f"patience: no better {t['best_metric']} in {int(t['patience'])} validations; stopped at step "
                              f"{step}; best at step {self.state.best_step} in {self.out / 'best'}, last in {self.out / 'export'}")
                    return
                if time_up and step < max_steps:
                    if step % int(t["ckpt_every"]):
                        self.save_checkpoint()
                    bar.close()
                    self.export()
                    acc.print(f"max_minutes: {float(t['max_minutes']):g} min reached at step {step}; checkpoint saved, "
                              f"model exported to {self.out / 'export'}; continue with --resume")
                    return
        except BaseException:
            bar.close()  # an error's line starts a line of its own
            raise
        bar.close()
        self.export()
        acc.print(f"done: {max_steps} steps; model exported to {self.out / 'export'}")

    def _keep_best(self, val: dict[str, float]) -> bool:
        """After a validation: export to ``RUN/best`` when ``train.best_metric`` improved (written
        under a temporary name, then renamed); True when ``train.patience`` validations in a row
        brought no new best. Every process takes the main process's decision."""
        t, st = self.tcfg, self.state
        key = t.get("best_metric")
        if not key:
            return False
        value = val.get(key)
        if self.acc.is_main_process and value is None:
            raise TrainingError(f"train.best_metric {key!r} is not among the validation figures "
                                f"({', '.join(sorted(val)) or 'none'})")
        mode = str(t.get("best_mode", "min"))
        better = value is not None and math.isfinite(value) and (
            math.isnan(st.best_value) or (value < st.best_value if mode == "min" else value > st.best_value))
        if self._any_process(better):
            best, tmp = self.out / "best", self.out / ".tmp-best"
            if self.acc.is_main_process and tmp.exists():
                shutil.rmtree(tmp)
            self.export(tmp)
            if self.acc.is_main_process:
                (tmp / "best.json").write_text(json.dumps({"metric": key, "mode": mode, "value": value,
                                                           "step": st.step}, indent=2) + "\n")
                if best.exists():
                    shutil.rmtree(best)
                os.replace(tmp, best)
            self.acc.wait_for_everyone()
            st.best_value, st.best_step, st.vals_since_best = float(value) if value is not None else st.best_value, st.step, 0
        else:
            st.vals_since_best += 1
        patience = int(t.get("patience") or 0)
        return self._any_process(patience > 0 and st.vals_since_best >= patience)

    def _sample_rate(self) -> int:
        """Sample rate of the validation audio logged to tensorboard."""
        return self.acc.unwrap_model(self.codec).sample_rate

    def _log_audio(self, step: int) -> None:
        try:
            tracker = self.acc.get_tracker("tensorboard", unwrap=True)
        except Exception:  # no tensorboard tracker configured
            return
        if not hasattr(tracker, "add_audio"):  # accelerate's stand-in when tensorboard is off
            return
        sr = self._sample_rate()
        for i, y in enumerate(getattr(self, "_val_samples", [])[:2]):
            tracker.add_audio(f"val/sample{i}", torch.from_numpy(y).unsqueeze(0), step, sample_rate=sr)


def _arch(model_cfg: dict) -> str:
    """The architecture part of a model config (training-only knobs such as dropout ignored).

    A continuous codec's ``stage``, ``freeze`` and ``anchor`` are training-only too: a stage-2
    config warm-starts from its stage-1 export (the frozen ``anchor_*`` copies it adds are
    optional weights, filled by ``Codec.prepare_training``). An iSTFT decoder's ``phase`` only
    says how the head's outputs are read (the weights have the same shapes), so a decoder can be
    warm-started across a change of it: the head's phase outputs then learn their new meaning.
    Its ``source`` likewise re-reads the head (the phase half becomes the harmonic share); the
    pitch head it adds starts from scratch (``warm_start_new``), and so does the share head of
    ``aperiodic: phase``, under which the head keeps its meaning. ``pitch_forcing`` is a
    training-only switch (what drives the sources while training) and changes no weight.
    """
    cfg = json.loads(json.dumps(model_cfg))
    cfg.get("quantizer", {}).pop("dropout", None)
    if isinstance(cfg.get("decoder"), dict):
        cfg["decoder"].pop("phase", None)
        cfg["decoder"].pop("source", None)
        cfg["decoder"].pop("aperiodic", None)
        cfg["decoder"].pop("pitch_forcing", None)
    for key in ("stage", "freeze", "anchor"):
        cfg.pop(key, None)
    for enc in ("encoder", "semantic_encoder", "acoustic_encoder"):
        if isinstance(cfg.get(enc), dict):
            cfg[enc].pop("pretrained", None)
            cfg[enc].pop("trainable", None)
    return json.dumps(cfg, sort_keys=True)


def _pesq(ref: np.ndarray, deg: np.ndarray, sr: int) -> float | None:
    try:
        from pesq import pesq

        return float(pesq(sr, ref, deg, "wb" if sr == 16000 else "nb"))
    except Exception:  # PESQ refuses silence and rates other than 8/16 kHz
        return None
