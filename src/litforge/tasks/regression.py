from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import CatMetric
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from litforge.tasks.net_task import NetTaskModule
from litforge.utils.plots import predicted_vs_actual_figure

LOSSES = ("mse", "huber", "l1")


def regression_metrics() -> MetricCollection:
    """Averaged over all targets alike; R² is the mean of the per-target R²."""
    return MetricCollection(
        {
            "mse": MeanSquaredError(),
            "rmse": MeanSquaredError(squared=False),
            "mae": MeanAbsoluteError(),
            "r2": R2Score(multioutput="uniform_average"),
        }
    )


class RegressionModule(NetTaskModule):
    """A plain nn.Module (`net`) fit to standardised targets; its outputs, the metrics and the
    predictions are in the targets' own units (`target_mean`/`target_std` undo the scaling). With a
    table's categorical embeddings (`cardinalities`), the net takes `(x, x_cat)`."""

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/r2",
        mode: str = "max",
        init: str = "default",
        loss: str = "mse",
        huber_delta: float = 1.0,
        feature_names: Sequence[str] = ("x",),
        target_names: Sequence[str] = ("target",),
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        cardinalities: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss!r} is not one of {LOSSES}")
        self.save_hyperparameters()
        num_targets = len(target_names)
        self.build_net(net, init, len(feature_names), num_targets, cardinalities)
        mean = torch.tensor(target_mean or [0.0] * num_targets)
        std = torch.tensor(target_std or [1.0] * num_targets)
        # rebuilt from the hyperparameters, so not saved twice in the state dict
        self.register_buffer("target_mean", mean, persistent=False)
        self.register_buffer("target_std", std, persistent=False)
        self.set_metrics(regression_metrics())
        self.test_predictions, self.test_targets = CatMetric(), CatMetric()

    def forward(self, x: Tensor, x_cat: Tensor | None = None) -> Tensor:
        """Predictions in the targets' units from standardised features (and categorical codes)."""
        return self._scaled(x, x_cat) * self.target_std + self.target_mean

    def _scaled(self, x: Tensor, x_cat: Tensor | None = None) -> Tensor:
        return self.net(x) if x_cat is None else self.net(x, x_cat)

    def _loss(self, scaled_preds: Tensor, targets: Tensor) -> Tensor:
        scaled_targets = (targets - self.target_mean) / self.target_std
        if self.hparams.loss == "huber":
            return nn.functional.huber_loss(scaled_preds, scaled_targets, delta=self.hparams.huber_delta)
        if self.hparams.loss == "l1":
            return nn.functional.l1_loss(scaled_preds, scaled_targets)
        return nn.functional.mse_loss(scaled_preds, scaled_targets)

    def _step(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        *inputs, y = batch
        scaled = self._scaled(*inputs)
        return self._loss(scaled, y), scaled * self.target_std + self.target_mean, y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, _ = self._step(batch)
        self.log_train_loss(loss, len(batch[1]))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log_evaluation("val", *self._step(batch))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_predictions.update(preds)
        self.test_targets.update(y)
        self.log_evaluation("test", loss, preds, y)

    def on_test_epoch_start(self) -> None:
        self.test_predictions.reset()
        self.test_targets.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per row of a `predict_dataloader` batch (`{"id": [...], "inputs": (x,) or (x, x_cat)}`):
        `prediction` in the target's units, or `prediction/<target>` per target when there are several."""
        names = self.hparams.target_names
        keys = ["prediction"] if len(names) == 1 else [f"prediction/{name}" for name in names]
        values = self(*batch["inputs"]).float().tolist()
        return [{"id": id_, **dict(zip(keys, row, strict=True))} for id_, row in zip(batch["id"], values, strict=True)]

    def figures(self) -> dict[str, Figure]:
        predicted = self.test_predictions.compute().cpu().numpy()
        actual = self.test_targets.compute().cpu().numpy()
        return {"predicted_vs_actual": predicted_vs_actual_figure(predicted, actual, self.hparams.target_names)}
