"""Classification of table rows on a plain net: cross-entropy with optional class weights, accuracy,
macro F1, AUROC and average precision, a confusion matrix and (two classes) ROC and precision-recall curves."""

from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryPrecisionRecallCurve,
    BinaryROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)
from torchmetrics.wrappers import LambdaInputTransformer

from litforge.tasks.image_classification import class_records
from litforge.tasks.net_task import NetTaskModule
from litforge.utils.errors import UserError
from litforge.utils.plots import confusion_matrix_figure

# the binary test curves: figure name and title
CURVES = {"roc": "ROC", "precision_recall": "precision-recall"}


def positive_scores(probabilities: Tensor) -> Tensor:
    """Class 1's probability: the score the binary metrics rank by."""
    return probabilities[:, 1]


def tabular_classification_metrics(num_classes: int) -> MetricCollection:
    """On class probabilities: accuracy, macro F1, and AUROC and average precision, of class 1 for two
    classes, else the macro mean of each class against the rest."""
    if num_classes == 2:
        ranking = {
            "auroc": LambdaInputTransformer(BinaryAUROC(), transform_pred=positive_scores),
            "ap": LambdaInputTransformer(BinaryAveragePrecision(), transform_pred=positive_scores),
        }
    else:
        ranking = {"auroc": MulticlassAUROC(num_classes), "ap": MulticlassAveragePrecision(num_classes)}
    labels = {"acc": MulticlassAccuracy(num_classes, average="micro"), "f1": MulticlassF1Score(num_classes)}
    return MetricCollection({**labels, **ranking}, compute_groups=False)


def class_weight(
    weights: str | Sequence[float] | None, class_counts: Sequence[int] | None, class_names: Sequence[str]
) -> Tensor | None:
    """The cross-entropy weight of each class: None (all 1), "balanced" (rows / (classes * the class's
    training rows), scikit-learn's rule), or one positive number per class in `class_names` order."""
    if weights is None:
        return None
    if weights == "balanced":
        if not class_counts or min(class_counts) < 1:
            raise UserError(f"model.class_weights=balanced needs each class's training rows; got {class_counts}")
        counts = torch.tensor(class_counts, dtype=torch.float32)
        return counts.sum() / (len(counts) * counts)
    if isinstance(weights, str) or len(weights) != len(class_names) or min(weights) <= 0:
        raise UserError(
            f"model.class_weights={weights}: give null, balanced, or one positive weight per class in the order "
            f"{list(class_names)}"
        )
    return torch.tensor([float(w) for w in weights])


class TabularClassificationModule(NetTaskModule):
    """A plain nn.Module (`net`) on table rows (`feature_names` are its inputs; with categorical
    embeddings also `cardinalities`, then the net takes `(x, x_cat)`), trained with cross-entropy.

    `class_weights` weights each row's loss by its class's weight; a batch's loss is the weighted mean
    (the sum of the weighted losses over the sum of the rows' weights, torch's `cross_entropy`), the same
    for training, validation and test. A prediction lists the most probable class and every class's
    probability (with `predict_top_k`, the k most probable).
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/f1",
        mode: str = "max",
        init: str = "default",
        class_weights: str | Sequence[float] | None = None,
        feature_names: Sequence[str] = ("x",),
        class_names: Sequence[str] = ("0", "1"),
        class_counts: Sequence[int] | None = None,
        cardinalities: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        # plain lists: the hyperparameters go into checkpoints read weights-only
        if class_weights is not None and not isinstance(class_weights, str):
            class_weights = list(class_weights)
        self.save_hyperparameters()
        self.class_names = list(class_names)
        num_classes = len(self.class_names)
        weight = class_weight(class_weights, class_counts, self.class_names)
        # rebuilt from the hyperparameters, so not saved twice in the state dict
        self.register_buffer("class_weight", weight, persistent=False)
        self.build_net(net, init, len(feature_names), num_classes, cardinalities)
        self.set_metrics(tabular_classification_metrics(num_classes), train=True)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_curves = nn.ModuleList([BinaryROC(), BinaryPrecisionRecallCurve()] if num_classes == 2 else [])

    def forward(self, x: Tensor, x_cat: Tensor | None = None) -> Tensor:
        """Class logits of standardised numeric inputs (and categorical codes, with embeddings)."""
        return self.net(x) if x_cat is None else self.net(x, x_cat)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits, targets, weight=self.class_weight)

    def _step(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        *inputs, y = batch
        logits = self(*inputs)
        return self.loss(logits, y), torch.softmax(logits, dim=-1), y

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss, probabilities, y = self._step(batch)
        self.train_predictions.add(probabilities, y)
        self.log_train_loss(loss, len(y))
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.log_evaluation("val", *self._step(batch))

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        loss, probabilities, y = self._step(batch)
        self.test_confusion.update(probabilities, y)
        for curve in self.test_curves:
            curve.update(probabilities[:, 1], y)
        self.log_evaluation("test", loss, probabilities, y)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        for curve in self.test_curves:
            curve.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per row of a `predict_dataloader` batch (`{"id": [...], "inputs": (x,) or (x, x_cat)}`)."""
        probabilities = torch.softmax(self(*batch["inputs"]), dim=-1)
        return class_records(batch["id"], probabilities, self.class_names, self.predict_top_k)

    def figures(self) -> dict[str, Figure]:
        matrix = self.test_confusion.compute().cpu().numpy()
        figures = {"confusion_matrix": confusion_matrix_figure(matrix, self.class_names)}
        for (name, title), curve in zip(CURVES.items(), self.test_curves, strict=False):
            figure, axes = curve.plot(score=True)
            axes.set_title(f"test {title} curve, positive class {self.class_names[1]!r}")
            figures[name] = figure
        return figures
