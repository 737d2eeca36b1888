"""The one training loop on Hugging Face Accelerate: 1 CPU, 1 GPU or many processes and nodes.

The loop knows nothing of codecs, enhancers or LMs: a :class:`~hasrd.train.task.Task` builds its
parts and takes its steps, and the loop owns the rest: the seed, the run folder, the lr
schedule (a pure function of the step, set on every optimizer before each update), the decisions
every process must take together (stop signals, ``max_minutes``, skipped steps, patience),
logs, atomic checkpoints with rotation, the best model, and exact resume.
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

import torch
from torch.utils.data import DataLoader

from ..config import dump_config
from .config import TrainConfig, TrainingError, lr_lambda
from .data import StepBatchSampler
from .task import Task, task_class


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


class Loop:
    """Runs one :class:`Task` from a resolved config.

    Args:
        cfg: the whole config (``task``, ``train``, ``data`` and the task's own sections).
        output_dir: the run folder: checkpoints, logs, exports.
        accelerator: an ``accelerate.Accelerator`` (made by :func:`hasrd.train.cli.main`).
    """

    def __init__(self, cfg: dict, output_dir: str | Path, accelerator, task: type[Task] | None = None,
                 created: bool | None = None):
        self.cfg = cfg
        self.t = TrainConfig.from_dict(cfg.get("train"))
        self.out = Path(output_dir)
        #: whether this run creates the run folder (a refused set-up then removes it); the command
        #: line decides before the Accelerator writes into it
        self.created = not self.out.exists() if created is None else created
        self.parts = None
        self.acc = accelerator
        self.state = TrainState()
        self.task: Task = (task or task_class(cfg.get("task", "codec")))(cfg, self)
        self._lam = lr_lambda(self.t)
        self._optimizers: list[torch.optim.Optimizer] = []
        self._stop_signal: str | None = None
        self.loader = None

    # ------------------------------------------------------------------ services for tasks
    def optimizer(self, params, lr: float | None = None) -> torch.optim.Optimizer:
        """An AdamW whose lr the loop sets from the schedule before every update (base ``lr``,
        default ``train.lr``). Prepare it with the accelerator in the task's :meth:`~Task.build`."""
        opt = torch.optim.AdamW(params, lr=float(lr if lr is not None else self.t.lr), betas=tuple(self.t.betas))
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
        self._optimizers.append(opt)
        return opt

    def lr(self, step: int | None = None) -> float:
        """The lr of ``train.lr`` at ``step`` (default: the step being taken)."""
        return self.t.lr * self._lam(self.state.step if step is None else step)

    def any_process(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any of them."""
        return bool(self.agree([flag])[0])

    def agree(self, flags: list[bool]) -> list[bool]:
        """Each flag true on every process when it is true on any (one collective for all of them)."""
        if self.acc.num_processes == 1:
            return [bool(f) for f in flags]
        value = torch.tensor([1.0 if f else 0.0 for f in flags], device=self.acc.device)
        return [bool(v > 0) for v in self.acc.reduce(value, reduction="sum")]

    def all_finite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is finite on every process (so every process skips together)."""
        return not self.any_process(not bool(torch.isfinite(value.detach()).all()))

    def main_first(self, fn, *args):
        """``fn(*args, progress=True)`` on the main process (which computes and writes a cache),
        then ``fn(*args, progress=False, write=False)`` on the others (which read it)."""
        out = fn(*args, progress=True) if self.acc.is_main_process else None
        self.acc.wait_for_everyone()
        return out if out is not None else fn(*args, progress=False, write=False)

    def update(self, loss: torch.Tensor, model, opt, name: str, count_bad: bool = True) -> dict | None:
        """One optimizer step of ``opt`` on ``loss``: the grad-norm log ``{"grad_norm/<name>": ...}``,
        or None when the loss or the gradient is not finite on some process (every process skips
        the step together; with ``count_bad``, ``train.max_bad_steps`` of them in a row stop the run).

        Under fp16 the accelerator's gradient scaler sees a skipped step too (its step and update
        run on the non-finite gradient, which lowers the scale), so the next step starts clean.
        """
        acc = self.acc
        if not self.all_finite(loss):
            return self._skip("loss", opt, count_bad)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        logs = {}
        if acc.sync_gradients:
            # a finite loss can still have a non-finite gradient (e.g. a power law at a silent
            # frame); stepping on it would leave NaN weights. The norm is of the synced gradients,
            # so every process skips together.
            # unscale (fp16) this optimizer's gradients only: the accelerator's own clip unscales
            # every prepared optimizer, and the next one's unscale would then fail
            acc.unscale_gradients(optimizer=opt)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.t.grad_clip)
            if not self.all_finite(norm):
                if acc.scaler is not None:
                    opt.step()  # the scaler finds the inf, skips the update and lowers its scale
                return self._skip("gradient", opt, count_bad)
            logs[f"grad_norm/{name}"] = norm.detach()
        if count_bad:
            self.state.bad_steps_in_a_row = 0
        opt.step()
        return logs

    def _skip(self, what: str, opt, count_bad: bool) -> None:
        opt.zero_grad(set_to_none=True)
        if not count_bad:
            return None
        self.state.bad_steps_in_a_row += 1
        self.acc.print(f"step {self.state.step}: non-finite {what}, step skipped ({self.state.bad_steps_in_a_row} in a row)")
        if self.state.bad_steps_in_a_row >= self.t.max_bad_steps:
            raise TrainingError(f"{self.state.bad_steps_in_a_row} non-finite steps in a row; stopping")
        return None

    # ------------------------------------------------------------------ set-up
    def setup(self, resume: bool) -> None:
        """Seed, run folder, the task's parts, then the latest checkpoint (with ``resume``) and the
        loader from its step. A refused set-up removes the run folder it created."""
        from accelerate.utils import set_seed

        acc = self.acc
        set_seed(self.t.seed, device_specific=True)
        created = self.created
        if self.out.exists() and not self.out.is_dir():
            raise TrainingError(f"--output-dir {self.out} exists and is not a folder")
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(dump_config(self.cfg))
        acc.wait_for_everyone()
        # rank 0 writes the run's files (config, k-means units, checkpoints) that every rank reads:
        # on several nodes the run folder must be one shared folder
        if self.any_process(not (self.out / "config.yaml").is_file()):
            raise TrainingError(f"--output-dir {self.out} is not shared by every process (a process does not see "
                                f"the main process's config.yaml there): use a folder on a shared file system")
        try:
            parts = self.task.build(resume)
            # on every process, before the first step: an unknown metric must not surface at a validation
            known = self.task.validation_metrics()
            if self.t.best_metric and not known:
                raise TrainingError(f"train.best_metric {self.t.best_metric} needs validation: train.val_every > 0 "
                                    f"and held-out data (data.val)")
            if self.t.best_metric and self.t.best_metric not in known:
                raise TrainingError(f"train.best_metric {self.t.best_metric!r} is not among the validation figures "
                                    f"({', '.join(sorted(known))})")
        except BaseException:
            if created and acc.is_main_process and not resume:
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        self.parts = parts
        acc.register_for_checkpointing(self.state)
        if resume:
            ckpt = self._load_newest_intact()
            if ckpt is None:
                acc.print(f"no checkpoint in {self.out}; starting from step 0")
            else:
                acc.print(f"resumed from {ckpt} at step {self.state.step}")
                saved = json.loads((ckpt / "COMPLETE").read_text()).get("num_processes")
                if saved is not None and int(saved) != acc.num_processes:
                    acc.print(f"warning: {ckpt.name} was saved by {saved} processes and resumes on "
                              f"{acc.num_processes}: the data order and random streams differ from an "
                              f"uninterrupted run (resume on {saved} for an exact continuation)")
                self._drop_replayed_logs()
        sampler = StepBatchSampler(len(parts.dataset), self.t.batch_size, self.t.seed,
                                   acc.process_index, acc.num_processes, self.state.step)
        # A private generator: creating the loader's iterator must not draw from the global RNG
        # that the checkpoint restored (it would shift quantizer dropout after a resume).
        self.loader = DataLoader(parts.dataset, batch_sampler=sampler, num_workers=parts.num_workers,
                                 collate_fn=parts.collate_fn, persistent_workers=parts.num_workers > 0,
                                 generator=torch.Generator().manual_seed(self.t.seed))

    def _load_newest_intact(self) -> Path | None:
        """Load the newest checkpoint whose files load; a damaged one (a file truncated by a kill or
        a full disk) is skipped with a one-line warning for the one before it. Each load replaces
        every saved state, so a failed partial load leaves nothing behind."""
        for ckpt in reversed(self.checkpoints()):
            try:
                self.acc.load_state(str(ckpt))
                return ckpt
            except Exception as exc:  # safetensors, torch.load and pickle errors of a damaged file
                reason = " ".join(str(exc).split())[:160] or type(exc).__name__
                self.acc.print(f"warning: {ckpt.name} does not load ({reason}); trying the checkpoint before it")
        if self.checkpoints():
            raise TrainingError(f"no checkpoint in {self.out} loads; move them away to start from step 0")
        return None

    def _drop_replayed_logs(self) -> None:
        """metrics.jsonl keeps no line of a step after the checkpoint (those steps run again)."""
        path = self.out / "metrics.jsonl"
        if not (self.acc.is_main_process and path.exists()):
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = [ln for ln in lines if _logged_step(ln) <= self.state.step]
        if len(kept) != len(lines):
            tmp = path.with_name(".tmp-metrics.jsonl")
            tmp.write_text("".join(kept))
            os.replace(tmp, path)

    # ------------------------------------------------------------------ checkpoints and exports
    def checkpoints(self) -> list[Path]:
        found = [p for p in self.out.glob("ckpt-*")
                 if p.is_dir() and p.name[5:].isdigit() and (p / "COMPLETE").exists()]
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
            (tmp / "COMPLETE").write_text(json.dumps({"step": step, "time": time.time(),
                                                      "num_processes": acc.num_processes}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in self.checkpoints()[: -self.t.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def export(self, directory: str | Path | None = None, dtype: str = "float32") -> Path:
        """The task's export of the current weights (main process), into ``RUN/export`` by default."""
        self.task.check_export_dtype(dtype)
        directory = Path(directory or self.out / "export")
        if self.acc.is_main_process:
            self.task.export(directory, dtype)
        self.acc.wait_for_everyone()
        return directory

    # ------------------------------------------------------------------ the loop
    def _on_signal(self, signum, frame):
        self._stop_signal = signal.Signals(signum).name

    def _set_lr(self) -> None:
        factor = self._lam(self.state.step)
        for opt in self._optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor

    def _log(self, logs: dict, step: int) -> dict[str, float]:
        logs = {k: float(v) for k, v in logs.items()}  # the one host sync of a logged step
        self.acc.log(logs, step=step)
        if self.acc.is_main_process:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps({"step": step, **logs}) + "\n")
        return logs

    def fit(self) -> None:
        acc, t = self.acc, self.t
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        from tqdm.auto import tqdm

        bar = tqdm(total=t.max_steps, initial=self.state.step, disable=not acc.is_main_process,
                   dynamic_ncols=True, desc="train")
        it = iter(self.loader)
        t0, seen = time.time(), 0
        for module in self.parts.modules:
            module.train()
        try:
            while self.state.step < t.max_steps:
                batch = next(it)
                batch = batch.to(acc.device) if isinstance(batch, torch.Tensor) else batch
                self._set_lr()
                lr = self.lr()
                logs = self.task.step(batch)
                self.state.step += 1
                seen += self.task.batch_items(batch) * acc.num_processes
                step = self.state.step
                # every process stops at the same step once any of them saw a signal or is past the limit
                stop, time_up = self.agree([self._stop_signal is not None,
                                            t.max_seconds is not None and time.time() - t0 >= t.max_seconds])
                if step % t.log_every == 0 or step == t.max_steps or time_up or stop:
                    logs["lr"] = lr
                    logs["samples_per_s"] = seen / max(time.time() - t0, 1e-9)
                    logs = self._log(logs, step)
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in logs.items()
                                     if k in ("loss/mel", "loss/sem_ce", "loss/disc", "loss/total", "samples_per_s")})
                patience_up = self._validate(step) if t.val_every and step % t.val_every == 0 else False
                bar.update(1)
                if step % t.ckpt_every == 0 or step == t.max_steps:
                    self.save_checkpoint()
                if stop or ((patience_up or time_up) and step < t.max_steps):
                    if step % t.ckpt_every:
                        self.save_checkpoint()
                    bar.close()
                    self._say_stopped(stop, patience_up, step)
                    return
        except BaseException:
            bar.close()  # an error's line starts a line of its own
            raise
        bar.close()
        self.export()
        acc.print(f"done: {t.max_steps} steps; model exported to {self.out / 'export'}")

    def _say_stopped(self, stop: bool, patience_up: bool, step: int) -> None:
        t = self.t
        if stop:
            what = self._stop_signal or "a stop signal to another process"
            self.acc.print(f"{what}: checkpoint saved at step {step}; resume with --resume")
            return
        self.export()
        if patience_up:
            self.acc.print(f"patience: no better {t.best_metric} in {t.patience} validations; stopped at step "
                           f"{step}; best at step {self.state.best_step} in {self.out / 'best'}, last in "
                           f"{self.out / 'export'}")
        else:
            self.acc.print(f"max_minutes: {t.max_minutes:g} min reached at step {step}; checkpoint saved, "
                           f"model exported to {self.out / 'export'}; continue with --resume")

    def _validate(self, step: int) -> bool:
        """Validate (main process), log, keep the best; True when patience ran out (on every process)."""
        acc = self.acc
        val = self.task.validate() if acc.is_main_process else {}
        if val and acc.is_main_process:
            self._log(val, step)
            self._log_audio(step)
            acc.print(f"step {step}: " + ", ".join(f"{k}={v:.3f}" for k, v in val.items()))
        return self._keep_best(val or {})

    def _keep_best(self, val: dict[str, float]) -> bool:
        """After a validation: export to ``RUN/best`` when ``train.best_metric`` improved (written
        under a temporary name, then renamed); True when ``train.patience`` validations in a row
        brought no new best. Every process takes the main process's decision."""
        t, st = self.t, self.state
        key = t.best_metric
        if not key:
            return False
        value = val.get(key)
        if self.any_process(self.acc.is_main_process and value is None):
            raise TrainingError(f"train.best_metric {key!r} is not among the validation figures "
                                f"({', '.join(sorted(val)) or 'none'})")
        better = value is not None and math.isfinite(value) and (
            math.isnan(st.best_value) or (value < st.best_value if t.best_mode == "min" else value > st.best_value))
        if self.any_process(better):
            best, tmp = self.out / "best", self.out / ".tmp-best"
            if self.acc.is_main_process and tmp.exists():
                shutil.rmtree(tmp)
            self.export(tmp)
            if self.acc.is_main_process:
                (tmp / "best.json").write_text(json.dumps({"metric": key, "mode": t.best_mode, "value": value,
                                                           "step": st.step}, indent=2) + "\n")
                if best.exists():
                    shutil.rmtree(best)
                os.replace(tmp, best)
            self.acc.wait_for_everyone()
            st.best_value, st.best_step, st.vals_since_best = float(value) if value is not None else st.best_value, st.step, 0
        else:
            st.vals_since_best += 1
        return self.any_process(t.patience > 0 and st.vals_since_best >= t.patience)

    def _log_audio(self, step: int) -> None:
        try:
            tracker = self.acc.get_tracker("tensorboard", unwrap=True)
        except Exception:  # no tensorboard tracker configured
            return
        if not hasattr(tracker, "add_audio"):  # accelerate's stand-in when tensorboard is off
            return
        for i, y in enumerate(list(self.task.val_samples)[:2]):
            tracker.add_audio(f"val/sample{i}", torch.from_numpy(y).unsqueeze(0), step, sample_rate=self.task.sample_rate)


def _logged_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return -1
