from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from litforge.tasks.metrics import classification_metrics
from litforge.tasks.net_task import NetTaskModule
from litforge.utils.plots import confusion_matrix_figure


def class_records(
    ids: Sequence[str], probabilities: Tensor, class_names: Sequence[str], top_k: int | None = None
) -> list[dict[str, Any]]:
    """Per input: its id, the most probable class, its probability, and `prob/<class>` for every
    class (in class order) or, with `top_k`, for the k most probable (most probable first)."""
    k = len(class_names) if top_k is None else min(top_k, len(class_names))
    probabilities = probabilities.float()
    values, indices = probabilities.topk(k, dim=-1)
    records = []
    for id_, p, top_values, top_indices in zip(
        ids, probabilities.tolist(), values.tolist(), indices.tolist(), strict=True
    ):
        shown = range(len(class_names)) if top_k is None else top_indices
        record = {"id": id_, "prediction": class_names[top_indices[0]], "probability": top_values[0]}
        records.append(record | {f"prob/{class_names[i]}": p[i] for i in shown})
    return records


class ImageClassificationModule(NetTaskModule):
    """A plain nn.Module (`net`) trained with cross-entropy on images of `input_shape`; a prediction
    lists every class's probability, or with `predict_top_k` the k most probable classes'."""

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
        self.build_net(net, init, input_shape=tuple(input_shape), num_outputs=num_classes)
        self.class_names = list(class_names or map(str, range(num_classes)))
        self.set_metrics(classification_metrics(num_classes), train=True)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        return nn.functional.cross_entropy(logits, y), logits.argmax(dim=-1), y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, preds, y = self._step(batch)
        self.train_predictions.add(preds, y)
        self.log_train_loss(loss, len(y))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log_evaluation("val", *self._step(batch))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, preds, y = self._step(batch)
        self.test_confusion.update(preds, y)
        self.log_evaluation("test", loss, preds, y)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per image of a `predict_dataloader` batch (`{"id": [...], "inputs": images}`)."""
        probabilities = torch.softmax(self(batch["inputs"]), dim=-1)
        return class_records(batch["id"], probabilities, self.class_names, self.predict_top_k)

    def figures(self) -> dict[str, Figure]:
        matrix = self.test_confusion.compute().cpu().numpy()
        return {"confusion_matrix": confusion_matrix_figure(matrix, self.class_names)}
