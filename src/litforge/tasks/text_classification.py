from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.classification import BinaryAUROC, MulticlassConfusionMatrix
from transformers import AutoModelForSequenceClassification

from litforge.tasks.finetune import BackboneFinetuning, check_layerwise_lr_decay
from litforge.tasks.hf_task import HFTaskModule
from litforge.tasks.metrics import classification_metrics
from litforge.utils.plots import confusion_matrix_figure


class TextClassificationModule(BackboneFinetuning, HFTaskModule):
    """A Hugging Face encoder with a sequence-classification head, trained with cross-entropy.

    `num_labels`, `id2label` and `tokenizer_files` come from the data module, `export_dir` see HFTaskModule.
    `freeze_backbone_epochs` and `layerwise_lr_decay`: see finetune.BackboneFinetuning.
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/acc",
        mode: str = "max",
        freeze_backbone_epochs: int = 0,
        layerwise_lr_decay: float = 1.0,
        num_labels: int = 2,
        id2label: list[str] | None = None,
        tokenizer_files: dict[str, str] | None = None,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_layerwise_lr_decay(layerwise_lr_decay)
        self.save_hyperparameters(ignore=["tokenizer_files"])
        names = id2label or [str(i) for i in range(num_labels)]
        self.build(AutoModelForSequenceClassification, backbone, tokenizer_files, names, num_labels)
        self.set_metrics(classification_metrics(num_labels), train=True)
        self.val_auroc = BinaryAUROC() if num_labels == 2 else None
        self.test_auroc = BinaryAUROC() if num_labels == 2 else None
        self.test_confusion = MulticlassConfusionMatrix(num_labels)

    def _step(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        logits = self(batch)
        labels = batch["labels"]
        return torch.nn.functional.cross_entropy(logits, labels), logits, labels

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, logits, labels = self._step(batch)
        self.train_predictions.add(logits.argmax(-1), labels)
        self.log_train_loss(loss, len(labels))
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        loss, logits, labels = self._step(batch)
        self.log_evaluation(stage, loss, logits.argmax(-1), labels)
        auroc = self.val_auroc if stage == "val" else self.test_auroc
        if auroc is not None:
            auroc.update(logits.softmax(-1)[:, 1], labels)
            self.log(f"{stage}/auroc", auroc, on_epoch=True, batch_size=len(labels))
        return logits, labels

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits, labels = self._evaluate(batch, "test")
        self.test_confusion.update(logits.argmax(-1), labels)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def figures(self) -> dict[str, Figure]:
        matrix = self.test_confusion.compute().cpu().numpy()
        return {"confusion_matrix": confusion_matrix_figure(matrix, self.id2label)}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per text of a predict batch (`id`, `text`, `text_pair` beside the token ids): the
        most likely label, its probability, and the `predict_top_k` most likely labels' (all by default)."""
        probs = self(batch).float().softmax(-1).cpu()
        values, indices = probs.topk(self.prediction_top_k(len(self.id2label)), dim=-1)
        records = []
        for row, (p, i) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
            texts = {key: batch[key][row] for key in ("text", "text_pair") if key in batch}
            top = {self.id2label[k]: round(v, 6) for k, v in zip(i, p, strict=True)}
            label = self.id2label[i[0]]
            records.append({"id": batch["id"][row], **texts, "label": label, "probability": top[label], "probs": top})
        return records
