"""Weights & Biases: offline into logs/wandb/ unless asked online; a sweep's jobs share a group."""

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from litforge.tracking import run_ids
from litforge.tracking.run_info import default_run_name, sweep_dir
from litforge.tracking.settings import wandb_mode


class WandbRunLogger(WandbLogger):
    """Lightning's WandbLogger with litforge's defaults: the mode from config, $WANDB_MODE or the
    login state; run name = experiment config + overrides; group = the sweep in a multirun."""

    def __init__(
        self,
        save_dir: str,
        project: str = "litforge",
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] | None = None,
        mode: str | None = None,
        log_best_checkpoint: bool = False,
        run_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        import wandb
        from lightning.pytorch.utilities import rank_zero_only

        # a job that failed earlier in this process (the Optuna sweeper goes on after failures)
        # left its run open, and Lightning would log this job into it
        if wandb.run is not None:
            wandb.finish(exit_code=1)
        # wandb.init makes <save_dir>/wandb/, so runs land in logs/wandb/
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        sweep = sweep_dir()
        # the id is chosen here and kept in the run dir, so resume=<run dir> continues this W&B run
        known = run_ids.load(run_dir).get("wandb")
        kwargs.setdefault("id", known or uuid.uuid4().hex[:8])
        if known:
            kwargs.setdefault("resume", "allow")
        elif run_dir and rank_zero_only.rank == 0:
            run_ids.remember(run_dir, wandb=kwargs["id"])
        super().__init__(
            name=name or default_run_name(),
            save_dir=save_dir,
            project=project,
            group=group or (Path(sweep).name if sweep else None),
            tags=[str(t) for t in tags or []],
            mode=wandb_mode(mode),
            **kwargs,
        )
        self.log_best_checkpoint = log_best_checkpoint
