"""Callbacks that make a long run safe to interrupt: RNG state in checkpoints, a checkpoint on
SIGTERM, and a stop at the first non-finite loss."""

import logging
import math
import random
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


class RngState(L.Callback):
    """Saves the Python, NumPy and torch RNG states in every checkpoint and restores them on
    resume, so dropout and augmentation draw the same numbers as an uninterrupted run.
    Stored as tensors and lists: loadable with torch's weights-only unpickler."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate((state["python_version"], tuple(state["python"]), None))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointOnSigterm(L.Callback):
    """SLURM and most schedulers send SIGTERM before a kill: training stops after the current
    batch, and this saves `last.ckpt` first so `resume=<run dir>` loses nothing.

    With more than one process (DDP) Lightning's own SIGTERM handler runs a collective (a
    broadcast) inside the signal handler, and each rank stops where its own signal reached it:
    the ranks then wait in different collectives and hang. Here the handler only notes the
    signal; after every batch all ranks agree (one all-reduce) whether any of them got it, and
    all stop after that same batch, whichever of them the signal reached.
    """

    def __init__(self, dirpath: str) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.received = False

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = True

    def _take_over_sigterm(self, trainer: L.Trainer) -> None:
        # Lightning installs its handler when a stage starts and restores the one before at its end
        if trainer.world_size > 1 and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._note)

    def _stop_if_any_rank_got_sigterm(self, trainer: L.Trainer) -> None:
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.received, all=False):
            raise SIGTERMException

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_sigterm(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_sigterm(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_sigterm(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_sigterm(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_any_rank_got_sigterm(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_any_rank_got_sigterm(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_any_rank_got_sigterm(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            if trainer.is_global_zero:
                log.info("SIGTERM: saved %s at step %d", self.path, trainer.global_step)


# what shells and SLURM report for a process that SIGTERM ended
SIGTERM_EXIT = 128 + signal.SIGTERM


@contextmanager
def exit_on_sigterm(run_dir: str | Path) -> Iterator[None]:
    """Lightning ends fit and test on SIGTERM with a SystemExit of status 0, which tells a shell or
    a scheduler that the run finished: exit with 143 instead, naming the command that continues it."""
    try:
        yield
    except SIGTERMException:
        if rank_zero_only.rank == 0:
            if (Path(run_dir) / "checkpoints" / "last.ckpt").is_file():
                command = f"python -m litforge.train {shlex.quote(f'resume={run_dir}')}"
                log.warning("SIGTERM stopped the run before its end; it is resumable: %s", command)
            else:
                log.warning("SIGTERM stopped the run before it saved a checkpoint: start it again")
        sys.exit(SIGTERM_EXIT)


class StopOnNonFiniteLoss(L.Callback):
    """Stops at the first NaN or infinite training loss, naming the step and the usual fixes;
    the checkpoints written so far are the last good ones and stay as they are."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or bool(torch.isfinite(loss.detach()).all()):
            return
        value = loss.detach().float().item()
        raise UserError(
            f"the training loss is {'nan' if math.isnan(value) else value} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}, batch {batch_idx}). Try a lower learning rate "
            "(model.optimizer.lr), gradient clipping (trainer.gradient_clip_val=1.0) or full precision "
            "(trainer.precision=32-true). Checkpoints saved before this step are kept."
        )
