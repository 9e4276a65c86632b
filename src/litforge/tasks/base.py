"""What every task module shares: optimiser/scheduler wiring, its monitored metric, the training loss,
the val/test metrics and their logging, `predict_top_k`, and gradient clipping that works under FSDP."""

from typing import Any

import lightning.pytorch as L
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from matplotlib.figure import Figure
from torch import Tensor
from torch.optim import Optimizer
from torchmetrics import MetricCollection

from litforge.tasks.metrics import EpochPredictions
from litforge.tasks.optim import configure_optimization
from litforge.utils.compat import logs_this_step
from litforge.utils.errors import UserError


class TaskModule(L.LightningModule):
    """Subclasses take `optimizer`, `scheduler`, `monitor` and `mode` in `__init__` and call
    `save_hyperparameters()`; the hyperparameters are plain values so that a checkpoint
    rebuilds its module with nothing but the checkpoint."""

    # the validation metrics the task logs, which `model.monitor` may name; litforge's own tasks are
    # listed in tasks/registry.py TASK_METRICS instead (read without importing torch)
    metric_names: tuple[str, ...] = ()
    # set by litforge.predict: how many candidates a prediction lists (None: `default_top_k`)
    predict_top_k: int | None = None
    # how many where predict.top_k is not given (None: all)
    default_top_k: int | None = None
    # what a task on `set_metrics(..., train=True)` adds its training predictions to
    train_predictions: EpochPredictions | None = None

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
        if self.train_predictions is not None:
            self.log_dict(self.train_predictions.score(self.train_metrics))

    def set_metrics(self, metrics: MetricCollection, train: bool = False) -> None:
        """`val_metrics` and `test_metrics` (which `log_evaluation` updates): `metrics` prefixed by
        their stage; with `train`, also `train_metrics`, scored at each training epoch's end on what
        the training steps added to `train_predictions`."""
        if train:
            self.train_metrics = metrics.clone(prefix="train/")
            self.train_predictions = EpochPredictions()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def log_evaluation(self, stage: str, loss: Tensor, preds: Tensor, targets: Tensor) -> None:
        """One validation or test batch: `<stage>_metrics` updated, `<stage>/loss` and the metrics
        logged per epoch (validation's also on the progress bar)."""
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(preds, targets)
        self.log_loss(stage, loss, len(targets))
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val", batch_size=len(targets))

    def log_loss(self, stage: str, loss: Tensor, batch_size: int) -> None:
        """`<stage>/loss` of a validation or test batch, averaged over the epoch (validation's on the progress bar)."""
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True, batch_size=batch_size)

    def on_predict_start(self) -> None:
        top_k = self.predict_top_k
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise UserError(f"top_k={top_k!r}: give a positive whole number, or null for the default")

    def prediction_top_k(self, available: int) -> int:
        """How many of `available` candidates a prediction lists: `predict_top_k`, else `default_top_k`, else all."""
        return min(self.predict_top_k or self.default_top_k or available, available)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimization(
            self,
            self.hparams.optimizer,
            self.hparams.get("scheduler"),
            total_steps=int(self.trainer.estimated_stepping_batches),
            monitor=self.hparams.monitor,
            param_groups=self.parameter_groups(),
            fused_allowed=self.fused_optimizer_allowed(),
        )

    def fused_optimizer_allowed(self) -> bool:
        """Whether Adam/AdamW may take torch's fused kernel (`model.optimizer.fused: null`). A fused
        step unscales 16-bit gradients itself, so Lightning's mixed-precision plugins refuse to clip
        them first, and a gradient scaler would leave clipping the scaled ones; DeepSpeed scales and
        steps its own way."""
        trainer = self.trainer
        if isinstance(trainer.strategy, DeepSpeedStrategy):
            return False
        plugin = trainer.precision_plugin
        amp = isinstance(plugin, MixedPrecision) or getattr(plugin, "scaler", None) is not None
        return not (amp and trainer.gradient_clip_val)

    def configure_gradient_clipping(
        self, optimizer: Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        """As Lightning's, but under FSDP the norm is clipped by FSDP's own `clip_grad_norm_`, which
        takes the norm over every rank's shard (Lightning's FSDP precision refuses to clip by norm)."""
        strategy = self.trainer.strategy
        if gradient_clip_val and gradient_clip_algorithm != "value" and isinstance(strategy, FSDPStrategy):
            strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def parameter_groups(self) -> list[dict[str, Any]] | None:
        """Parameter groups for the optimiser; None: decay weight matrices, not biases or norms."""
        return None

    def figures(self) -> dict[str, Figure]:
        """Figures made at the end of testing, saved to the run dir by the SaveFigures callback."""
        return {}
