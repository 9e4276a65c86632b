from collections.abc import Sequence
from typing import Any

import hydra
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from litforge.nets.init import init_weights
from litforge.tasks.base import TaskModule
from litforge.tasks.metrics import EpochPredictions, classification_metrics
from litforge.utils.plots import confusion_matrix_figure


class ImageClassificationModule(TaskModule):
    """A plain nn.Module (`net`) trained with cross-entropy on images of `input_shape`."""

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/acc",
        mode: str = "max",
        init: str = "default",
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: nn.Module = hydra.utils.instantiate(net, input_shape=tuple(input_shape), num_outputs=num_classes)
        init_weights(self.net, init)
        self.class_names = list(class_names or map(str, range(num_classes)))
        metrics = classification_metrics(num_classes)
        self.train_metrics = metrics.clone(prefix="train/")
        self.train_predictions = EpochPredictions()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        return nn.functional.cross_entropy(logits, y), logits.argmax(dim=-1), y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, preds, y = self._step(batch)
        self.train_predictions.add(preds, y)
        self.log_train_loss(loss, len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_dict(self.train_predictions.score(self.train_metrics))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log_evaluation("val", *self._step(batch))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_confusion.update(preds, y)
        self.log_evaluation("test", loss, preds, y)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return torch.softmax(self(x), dim=-1)

    def figures(self) -> dict[str, Figure]:
        matrix = self.test_confusion.compute().cpu().numpy()
        return {"confusion_matrix": confusion_matrix_figure(matrix, self.class_names)}
