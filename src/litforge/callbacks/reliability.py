"""Callbacks that make a long run safe to interrupt: RNG state in checkpoints, a checkpoint on
SIGTERM, and a stop at the first non-finite loss."""

import logging
import math
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
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
    """SLURM and most schedulers send SIGTERM before a kill: Lightning stops after the current
    batch, and this saves `last.ckpt` first so `resume=<run dir>` loses nothing."""

    def __init__(self, dirpath: str) -> None:
        self.path = Path(dirpath) / "last.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            log.info("SIGTERM: saved %s at step %d; continue with resume=<run dir>", self.path, trainer.global_step)


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
