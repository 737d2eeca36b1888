"""The ``train`` section of a training config, typed and validated once, before anything is written.

Every task (codec, enhance, lm, star) trains through the same loop, so they share this one
section. Unknown keys are refused with the nearest known name (a misspelt key that silently
changed nothing is the costliest mistake a GPU user can make), values are cast to their types and
checked against their ranges, and the lr schedule and the wall-clock limit are checked here, so a
bad run is refused in one line before any data, teacher or run folder is touched.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any


class TrainingError(RuntimeError):
    """Training cannot go on (a bad config, too many non-finite losses, bad data, ...)."""


#: a training config's top-level sections (``enhance``, ``lm`` and ``star`` belong to those tasks)
SECTIONS = ("task", "model", "teacher", "discriminator", "mel_loss", "loss_weights", "data", "train",
            "enhance", "lm", "star",
            "phase_loss", "stft_loss")  # the settings of the losses named in codec_task.SECTION_LOSSES


def check_keys(where: str, section: dict, known) -> None:
    """Refuse a key of ``section`` (the config's ``where`` section, ``""`` for the top level) that is
    not in ``known``: a misspelt key would otherwise change nothing, silently."""
    for key in section:
        if key not in known:
            near = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
            name = f"{where}.{key}" if where else str(key)
            hint = f"; did you mean {where + '.' if where else ''}{near[0]}?" if near else ""
            what = "setting" if where else "config section"
            raise TrainingError(f"{name}: unknown {what}{hint}")


@dataclass
class TrainConfig:
    """The ``train`` section. Keys that a task does not use (a codec's ``segment_seconds`` for the
    LM) are accepted and ignored by it; keys that no task knows are refused."""

    seed: int = 0
    batch_size: int = 8
    segment_seconds: float = 1.0
    max_steps: int = 1000
    lr: float = 3e-4
    disc_lr: float | None = None  # None: same as lr
    betas: list = field(default_factory=lambda: [0.8, 0.99])
    lr_decay: float = 0.99999  # multiplicative per step, after warm-up
    warmup_steps: int = 0
    anneal_start: int | None = None  # step where a cosine anneal of the lr to 0 begins (on top of lr_decay)
    anneal_steps: int = 0  # its length in steps; the lr is 0 from anneal_start + anneal_steps on
    disc_start: int = 0
    grad_clip: float = 1000.0
    ckpt_every: int = 500
    keep_last: int = 3
    log_every: int = 20
    val_every: int = 0
    val_files: int = 4
    num_workers: int = 0
    max_bad_steps: int = 10
    loudness_db: float = -20.0
    gain_jitter_db: float = 6.0
    speed_perturb: list | None = None  # e.g. [0.9, 1.0, 1.1]: each crop plays one of these times faster
    augment: dict | None = None  # e.g. {p_reverb: 0.3, p_eq: 0.5}: a random recording channel per crop (train/augment.py)
    kmeans_frames: int = 200000  # teacher frames used to fit k-means units (when no kmeans file)
    dead_code_window: int = 100  # a code unused (by every process) for this many steps counts as dead
    init_from: str | None = None  # a save_pretrained folder whose weights start the run (warm start, fresh optimizer)
    init_only: list | None = None  # warm-start only these parts (e.g. [encoder, quantizer, semantic_head])
    best_metric: str | None = None  # e.g. val/mel: export the weights of its best validation to RUN/best
    best_mode: str = "min"  # min | max: whether a lower or a higher best_metric is better
    patience: int = 0  # stop (checkpoint and export) after this many validations without a new best (0: never)
    max_minutes: float | None = None  # stop (checkpoint and export) after this many minutes of this session's loop
    mixed_precision: str | None = None  # no | bf16 | fp16 for the Accelerator (None: as accelerate launch says)
    compile: bool = False  # torch.compile the codec's forward (in place: checkpoints and exports unchanged)
    dist_timeout: float = 600.0  # seconds a collective may wait for the other processes before the run fails

    @classmethod
    def from_dict(cls, section: dict | None) -> TrainConfig:
        """The validated section (raises :class:`TrainingError` naming the key)."""
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise TrainingError(f"train must be a mapping of settings, not {section!r}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        check_keys("train", section, known)
        values = {k: _cast(k, v, known[k].type) for k, v in section.items()}
        cfg = cls(**values)
        cfg._check()
        return cfg

    def _check(self) -> None:
        at_least = {"batch_size": 1, "max_steps": 0, "warmup_steps": 0, "anneal_steps": 0, "disc_start": 0,
                    "ckpt_every": 1, "keep_last": 1, "log_every": 1, "val_every": 0, "val_files": 0,
                    "num_workers": 0, "max_bad_steps": 1, "kmeans_frames": 1, "dead_code_window": 1, "patience": 0}
        for key, low in at_least.items():
            if getattr(self, key) < low:
                raise TrainingError(f"train.{key}={getattr(self, key)}: must be >= {low}")
        for key in ("segment_seconds", "lr", "lr_decay", "grad_clip", "dist_timeout"):
            value = getattr(self, key)
            if not (value > 0 and math.isfinite(value)):
                raise TrainingError(f"train.{key}={value}: must be a finite number > 0")
        if self.disc_lr is not None and not self.disc_lr > 0:
            raise TrainingError(f"train.disc_lr={self.disc_lr}: must be > 0 (or null: same as train.lr)")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise TrainingError(f"train.betas={self.betas}: two numbers in [0, 1)")
        self.betas = [float(b) for b in self.betas]
        if self.anneal_start is not None and (self.anneal_start < 0 or self.anneal_steps <= 0):
            raise TrainingError(f"train.anneal_start={self.anneal_start} needs anneal_start >= 0 and anneal_steps > 0 "
                                f"(got anneal_steps={self.anneal_steps})")
        if self.max_minutes is not None and not (self.max_minutes > 0 and math.isfinite(self.max_minutes)):
            raise TrainingError(f"train.max_minutes={self.max_minutes}: a wall-clock limit must be a number of "
                                f"minutes > 0 (or null)")
        if self.best_mode not in ("min", "max"):
            raise TrainingError(f"train.best_mode must be min or max, got {self.best_mode!r}")
        if self.patience and not self.best_metric:
            raise TrainingError("train.patience counts validations without a new best: it needs train.best_metric")
        if self.best_metric and not self.val_every:
            raise TrainingError(f"train.best_metric {self.best_metric} needs validation: train.val_every > 0 and data.val")
        if self.mixed_precision is not None and self.mixed_precision not in ("no", "bf16", "fp16"):
            raise TrainingError(f"train.mixed_precision={self.mixed_precision}: use no, bf16 or fp16 (or null)")

    @property
    def max_seconds(self) -> float | None:
        """``max_minutes`` in seconds (None: no wall-clock limit)."""
        return None if self.max_minutes is None else 60.0 * self.max_minutes

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cast(key: str, value: Any, kind: str) -> Any:
    """``value`` as the field's type (``kind`` is its annotation as text), or a one-line error."""
    optional = kind.endswith("| None")
    base = kind.split("|")[0].strip()
    if value is None:
        if optional:
            return None
        raise TrainingError(f"train.{key}: must be set (a {base}), not null")
    if base == "str" and key == "mixed_precision" and value is False:
        return "no"  # YAML 1.1 reads a bare `no` as false
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            raise TypeError
        if base == "int":
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
            if not number.is_integer():
                raise TypeError
            return int(number)
        if base == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)  # YAML 1.1 reads 3e-4 as a string
        if base == "str":
            if isinstance(value, (dict, list, bool)):
                raise TypeError
            return str(value)
        if base == "list":
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return list(value)
        if base == "dict":
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        pass
    names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
             "list": "a list", "dict": "a mapping"}
    raise TrainingError(f"train.{key}={value!r}: expected {names.get(base, base)}" + (" or null" if optional else ""))


def lr_lambda(t: TrainConfig):
    """The lr multiplier per step: linear warm-up, then ``lr_decay`` per step, times a cosine from
    1 to 0 over ``anneal_steps`` from ``anneal_start`` on.

    A pure function of the step and the config: the loop sets every optimizer's lr from it before
    each update, so the lr does not depend on the number of processes, skipped steps or resumes, and
    a run resumed with an anneal added (starting at or after the resumed step) continues at the same
    lr: the factor is 1 up to ``anneal_start``.
    """
    warmup, decay = t.warmup_steps, t.lr_decay
    start, length = t.anneal_start, t.anneal_steps

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        factor = decay ** max(0, step - warmup)
        if start is not None and step > start:
            done = min(1.0, (step - start) / length)
            factor *= 0.5 * (1.0 + math.cos(math.pi * done))
        return factor

    return f
