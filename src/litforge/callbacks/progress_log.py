"""Training progress as plain log lines, for runs without a terminal (nohup, CI, SLURM), where a
progress bar shows nothing until fitting ends."""

import logging
import math
import sys
import time
from datetime import timedelta
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.utilities.data import extract_batch_size
from lightning.pytorch.utilities.exceptions import MisconfigurationException

log = logging.getLogger(__name__)


class _Window:
    """Samples, loss and time since a start, without the time spent validating."""

    def __init__(self, step: int) -> None:
        self.start, self.step, self.validating = time.perf_counter(), step, 0.0
        self.samples, self.loss_sum, self.loss_samples = 0, torch.zeros(()), 0

    def add(self, loss: torch.Tensor | None, batch_size: int) -> None:
        self.samples += batch_size
        if loss is not None:
            # kept on the loss's device: a .item() per step would wait for the GPU every step
            self.loss_sum = self.loss_sum.to(loss.device) + loss.detach().float() * batch_size
            self.loss_samples += batch_size

    def loss(self) -> float | None:
        return self.loss_sum.item() / self.loss_samples if self.loss_samples else None

    def training_seconds(self) -> float:
        return max(time.perf_counter() - self.start - self.validating, 1e-9)


class ProgressLog(L.Callback):
    """One line per training epoch, always: its validation metrics (the monitored one first, with
    the best so far), the epoch's mean training loss, samples/s and the ETA of the whole fit.

    Without a terminal on stdout (`interactive: null` detects it; true/false force it) also a line
    every `every_n_steps` optimiser steps with the loss since the last line, throughput and ETA, and
    one per validation inside an epoch (`trainer.val_check_interval` below 1); the progress bar is
    then switched off (`progress_bar_without_tty: true` keeps it), since without a terminal it
    prints only its last frame when fitting ends. Lines go to the `logging` root, which Hydra writes
    to the console and `<run dir>/train.log`; rank 0 only. The ETA counts to `max_epochs`/`max_steps`
    at the pace so far, validation included: early stopping may end the run sooner.
    """

    def __init__(
        self, every_n_steps: int = 100, interactive: bool | None = None, progress_bar_without_tty: bool = False
    ) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps={every_n_steps}: give 0 (no step lines) or more")
        self.every_n_steps = every_n_steps
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.progress_bar_without_tty = progress_bar_without_tty
        self._fit = self._epoch = self._window = _Window(0)
        self._total_steps = math.inf
        self._validated = False
        self._validation_start = 0.0
        self._epoch_batches = 0
        self._best: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        bar = trainer.progress_bar_callback
        if not self.interactive and not self.progress_bar_without_tty and bar is not None:
            bar.disable()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit = self._window = _Window(trainer.global_step)
        self._total_steps = trainer.estimated_stepping_batches

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch = _Window(trainer.global_step)
        self._validated = False
        self._epoch_batches = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = loss if isinstance(loss, torch.Tensor) else None
        size = _batch_size(batch)
        self._epoch_batches += 1
        self._epoch.add(loss, size)
        self._window.add(loss, size)
        step = trainer.global_step
        if self.interactive or not self.every_n_steps or step % self.every_n_steps or step == self._window.step:
            return
        if trainer.is_global_zero:
            window = self._window
            seconds = window.training_seconds()
            batches = f"batch {batch_idx + 1}/{_count(trainer.num_training_batches)}"
            log.info(
                "epoch %d step %d/%s (%s): train/loss %s | %.1f steps/s, %.1f samples/s | ETA %s",
                trainer.current_epoch,
                step,
                _count(self._total_steps),
                batches,
                _number(window.loss()),
                (step - window.step) / seconds,
                window.samples * trainer.world_size / seconds,
                self._eta(step),
            )
        self._window = _Window(step)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        seconds = time.perf_counter() - self._validation_start
        self._epoch.validating += seconds
        self._window.validating += seconds
        self._validated = True
        self._keep_best(trainer, pl_module)
        mid_epoch = 0 < self._epoch_batches < trainer.num_training_batches
        if mid_epoch and not self.interactive and trainer.is_global_zero:
            log.info(
                "epoch %d step %d validation: %s",
                trainer.current_epoch,
                trainer.global_step,
                self._metrics(trainer, pl_module),
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        epoch = self._epoch
        seconds = epoch.training_seconds()
        metrics = self._metrics(trainer, pl_module) if self._validated else "no validation this epoch"
        log.info(
            "epoch %d done (%d/%s): %s | train/loss %s | %d samples in %.1f s, %.1f samples/s | ETA %s",
            trainer.current_epoch,
            trainer.current_epoch + 1,
            _count(trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else math.inf),
            metrics,
            _number(epoch.loss()),
            epoch.samples * trainer.world_size,
            seconds,
            epoch.samples * trainer.world_size / seconds,
            self._eta(trainer.global_step),
        )

    def _keep_best(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The best monitored value so far; ModelCheckpoint may only take this epoch's after this line."""
        monitor, mode = _monitor(trainer, pl_module)
        value = trainer.callback_metrics.get(monitor) if monitor else None
        if value is None:
            return
        value = float(value)
        saved = getattr(trainer.checkpoint_callback, "best_model_score", None)
        pick = min if mode == "min" else max
        known = [v for v in (self._best, None if saved is None else float(saved)) if v is not None]
        self._best = pick([value, *known]) if math.isfinite(value) else (pick(known) if known else None)

    def _metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """The validation metrics, the monitored one first with the best value so far."""
        values = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        monitor, _ = _monitor(trainer, pl_module)
        parts = []
        if monitor in values:
            kept = f" (best {_number(self._best)})" if self._best is not None else ""
            parts.append(f"{monitor} {_number(values.pop(monitor))}{kept}")
        parts += [f"{k} {_number(v)}" for k, v in sorted(values.items())]
        return ", ".join(parts) or "no validation metrics"

    def _eta(self, step: int) -> str:
        done = step - self._fit.step
        if not done or math.isinf(self._total_steps):
            return "unknown"
        seconds = (self._total_steps - step) * (time.perf_counter() - self._fit.start) / done
        return str(timedelta(seconds=round(max(seconds, 0.0))))


def _monitor(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[str | None, str]:
    """The task's monitored metric and mode (litforge's tasks declare them), else the checkpoint's."""
    hparams = getattr(pl_module, "hparams", {})
    checkpoint = trainer.checkpoint_callback
    monitor = hparams.get("monitor") or getattr(checkpoint, "monitor", None)
    return monitor, hparams.get("mode") or getattr(checkpoint, "mode", "min")


def _batch_size(batch: Any) -> int:
    try:
        return extract_batch_size(batch)
    except (MisconfigurationException, RecursionError):
        return 0


def _count(value: float) -> str:
    return "?" if math.isinf(value) else str(int(value))


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    value = value.item() if isinstance(value, torch.Tensor) else float(value)
    return f"{value:.4g}"
