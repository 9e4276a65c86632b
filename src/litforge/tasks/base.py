"""What every task module shares: optimiser/scheduler wiring, its monitored metric, the training loss."""

from typing import Any

import lightning.pytorch as L
from matplotlib.figure import Figure
from torch import Tensor

from litforge.tasks.optim import configure_optimization
from litforge.utils.compat import logs_this_step


class TaskModule(L.LightningModule):
    """Subclasses take `optimizer`, `scheduler`, `monitor` and `mode` in `__init__` and call
    `save_hyperparameters()`; the hyperparameters are plain values so that a checkpoint
    rebuilds its module with nothing but the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self._train_loss_sum: Tensor | None = None
        self._train_loss_count = 0

    def log_train_loss(self, loss: Tensor, batch_size: int) -> None:
        """`train/loss_step` on the steps the loggers write (every `trainer.log_every_n_steps`)
        and `train/loss_epoch`, the epoch's sample-weighted mean, at the epoch end.

        Lightning's `self.log` costs about a millisecond a call on CPU, as much as a small model's
        whole step, so it is skipped on the steps nothing records (see `make bench`).
        """
        weighted = loss.detach() * batch_size
        self._train_loss_sum = weighted if self._train_loss_sum is None else self._train_loss_sum + weighted
        self._train_loss_count += batch_size
        if logs_this_step(self.trainer):
            self.log(
                "train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size
            )

    def on_train_epoch_end(self) -> None:
        if self._train_loss_count:
            mean = self._train_loss_sum / self._train_loss_count
            self.log("train/loss_epoch", mean, on_epoch=True, prog_bar=True, sync_dist=True)
        self._train_loss_sum, self._train_loss_count = None, 0

    def log_evaluation(self, stage: str, loss: Tensor, preds: Tensor, targets: Tensor) -> None:
        """One validation or test batch: `<stage>_metrics` updated, `<stage>/loss` and the metrics
        logged per epoch (validation's also on the progress bar)."""
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(preds, targets)
        on_bar, size = stage == "val", len(targets)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=on_bar, sync_dist=True, batch_size=size)
        self.log_dict(metrics, on_epoch=True, prog_bar=on_bar, batch_size=size)

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
