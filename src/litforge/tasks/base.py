"""What every task module shares: optimiser/scheduler wiring and its monitored metric."""

from typing import Any

import lightning.pytorch as L
from matplotlib.figure import Figure

from litforge.tasks.optim import configure_optimization


class TaskModule(L.LightningModule):
    """Subclasses take `optimizer`, `scheduler`, `monitor` and `mode` in `__init__` and call
    `save_hyperparameters()`; the hyperparameters are plain values so that a checkpoint
    rebuilds its module with nothing but the checkpoint."""

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimization(
            self,
            self.hparams.optimizer,
            self.hparams.get("scheduler"),
            total_steps=int(self.trainer.estimated_stepping_batches),
            monitor=self.hparams.monitor,
            param_groups=self.parameter_groups(),
        )

    def parameter_groups(self) -> list[dict[str, Any]] | None:
        """Parameter groups for the optimiser; None: decay weight matrices, not biases or norms."""
        return None

    def figures(self) -> dict[str, Figure]:
        """Figures made at the end of testing, saved to the run dir by the SaveFigures callback."""
        return {}
