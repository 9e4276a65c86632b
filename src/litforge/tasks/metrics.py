import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def classification_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        }
    )


class EpochPredictions:
    """A training epoch's predicted and true labels, kept as tensors and scored once at its end.

    Updating torchmetrics objects every step cost as much as a small model's step (see
    `make bench`); the epoch's scores are the same. In DDP the metrics' compute syncs the ranks.
    """

    def __init__(self) -> None:
        self.preds: list[Tensor] = []
        self.targets: list[Tensor] = []

    def add(self, preds: Tensor, targets: Tensor) -> None:
        self.preds.append(preds.detach())
        self.targets.append(targets.detach())

    def score(self, metrics: MetricCollection) -> dict[str, Tensor]:
        """The epoch's scores under `metrics` (left reset), and the buffer emptied for the next epoch."""
        if not self.preds:
            return {}
        metrics.update(torch.cat(self.preds), torch.cat(self.targets))
        self.preds.clear()
        self.targets.clear()
        scores = metrics.compute()
        metrics.reset()
        return scores
