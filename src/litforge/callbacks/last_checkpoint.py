"""last.ckpt, which only a resume reads: a completed sweep job removes it, keeping its best checkpoint."""

import logging
from pathlib import Path

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint plus `keep_when_done`: whether its file outlives a run that
    completed. null: removed at the end of a completed job of a multirun (-m), kept otherwise."""

    def __init__(self, *args: object, keep_when_done: bool | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.keep_when_done = keep_when_done

    def kept(self, in_sweep: bool) -> bool:
        return self.keep_when_done if self.keep_when_done is not None else not in_sweep


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def remove_when_done(trainer: L.Trainer) -> list[Path]:
    """After a run completed: remove the last checkpoints none of their writers keeps."""
    callbacks = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint) and c.dirpath]
    if not trainer.is_global_zero or not callbacks:
        return []
    in_sweep = _in_sweep()
    paths: dict[Path, bool] = {}
    for callback in callbacks:
        path = Path(callback.dirpath) / f"{callback.filename}{callback.FILE_EXTENSION}"
        paths[path] = paths.get(path, False) or callback.kept(in_sweep)
    removed = [path for path, kept in paths.items() if not kept and path.is_file()]
    for path in removed:
        path.unlink()
        log.info("removed %s: the job completed, and only a resume reads it (keep_when_done=true keeps it)", path)
    return removed
