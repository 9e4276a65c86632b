"""Checkpoint paths that follow a run directory that was moved or copied between two of its runs."""

import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class CheckpointPathsInRunDir(L.Callback):
    """ModelCheckpoint keeps absolute paths in its state (its folder, the best, last and top-k
    checkpoints). When the folder it writes to now is another one, because the run directory was
    moved or copied, those paths are re-rooted in it before ModelCheckpoint loads its state (Lightning
    calls every callback's `on_load_checkpoint` first). Else Lightning drops the ranking and keeps
    only the old best path: a moved run's test fails on a missing file, a copied one tests the
    original directory's checkpoint.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key) if isinstance(callback, ModelCheckpoint) else None
            if not state or not state.get("dirpath") or not callback.dirpath:
                continue
            old, new = os.path.normpath(state["dirpath"]), os.path.normpath(callback.dirpath)
            if old == new:
                continue
            moved = _rerooted(state, old, new)
            best = moved.get("best_model_path")
            # a folder changed on purpose (callbacks.*.dirpath) lacks the old files: left to Lightning
            if best and not Path(best).is_file():
                continue
            states[callback.state_key] = moved
            log.info("checkpoints of %s are now in %s: their paths follow it", old, new)


def _rerooted(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    def follow(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        path = os.path.normpath(value)
        if path == old:
            return new
        return os.path.join(new, os.path.relpath(path, old)) if path.startswith(old + os.sep) else value

    moved = {key: follow(value) for key, value in state.items()}
    if isinstance(state.get("best_k_models"), dict):
        moved["best_k_models"] = {follow(path): score for path, score in state["best_k_models"].items()}
    return moved
