"""Regress the sum of a row of digits with a small MLP."""

from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.regression import MeanAbsoluteError

from litforge.tasks.base import TaskModule


class DigitSumTask(TaskModule):
    metric_names = ("val/loss", "val/mae")
    prediction_file = "predictions.csv"
    # litforge.predict sets it; a sum has no classes to rank
    predict_top_k: int | None = None

    def __init__(
        self,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/mae",
        mode: str = "min",
        hidden_size: int = 16,
        length: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(length, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))
        self.val_metrics = MetricCollection({"mae": MeanAbsoluteError()}).clone(prefix="val/")
        self.test_metrics = MetricCollection({"mae": MeanAbsoluteError()}).clone(prefix="test/")
        self.tested: list[tuple[Tensor, Tensor]] = []

    def forward(self, digits: Tensor) -> Tensor:
        return self.net(digits).squeeze(-1)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        digits, totals = batch
        preds = self(digits)
        return nn.functional.mse_loss(preds, totals), preds, totals

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, totals = self._step(batch)
        self.log_train_loss(loss, len(totals))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log_evaluation("val", *self._step(batch))

    def on_test_epoch_start(self) -> None:
        self.tested = []

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, preds, totals = self._step(batch)
        self.tested.append((preds.detach().cpu(), totals.cpu()))
        self.log_evaluation("test", loss, preds, totals)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        preds = self(batch["inputs"]).tolist()
        return [{"id": id_, "prediction": p} for id_, p in zip(batch["id"], preds, strict=True)]

    def figures(self) -> dict[str, Figure]:
        if not self.tested:
            return {}
        preds, totals = (torch.cat(part).numpy() for part in zip(*self.tested, strict=True))
        figure, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(totals, preds, s=8)
        ax.set(xlabel="sum", ylabel="predicted")
        return {"predicted_vs_sum": figure}
