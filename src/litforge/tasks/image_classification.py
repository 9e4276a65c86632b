"""Image classification on a plain net (litforge.nets) or a Hugging Face vision backbone."""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from litforge.tasks.finetune import BackboneFinetuning, check_layerwise_lr_decay
from litforge.tasks.metrics import classification_metrics
from litforge.tasks.net_task import NetTaskModule
from litforge.tasks.vision_backbone import VisionBackbone
from litforge.utils.compat import attached_trainer
from litforge.utils.errors import UserError
from litforge.utils.plots import confusion_matrix_figure

log = logging.getLogger(__name__)


def _check_options(
    net: dict[str, Any] | None,
    backbone: dict[str, Any] | None,
    freeze_backbone_epochs: int,
    layerwise_lr_decay: float,
    label_smoothing: float,
    mixup_alpha: float,
) -> None:
    if (net is None) == (backbone is None):
        raise UserError(
            "model: give a plain net (model/net=cnn or mlp) or a pretrained backbone (model/backbone=<name>), "
            f"not {'both' if net is not None else 'neither'}"
        )
    check_layerwise_lr_decay(layerwise_lr_decay)
    if backbone is None and (freeze_backbone_epochs or layerwise_lr_decay != 1):
        raise UserError(
            "model.freeze_backbone_epochs and model.layerwise_lr_decay fine-tune a pretrained backbone: choose "
            "one with model/backbone=<name>, or leave them at 0 and 1 for model/net"
        )
    if not 0 <= label_smoothing < 1:
        raise UserError(f"model.label_smoothing={label_smoothing}: give a value in [0, 1); 0 turns it off")
    if mixup_alpha < 0:
        raise UserError(f"model.mixup_alpha={mixup_alpha}: give a Beta concentration above 0, or 0 for no mixup")


def best_checkpoint(module: nn.Module) -> str:
    """The path of the best checkpoint the module's trainer kept, "" where none."""
    callback = getattr(attached_trainer(module), "checkpoint_callback", None)
    return getattr(callback, "best_model_path", "") if callback is not None else ""


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


class ImageClassificationModule(BackboneFinetuning, NetTaskModule):
    """Cross-entropy on images of `input_shape`, through either a plain nn.Module (`net`, litforge.nets)
    or a Hugging Face vision backbone (`backbone`: {pretrained_model_name_or_path, config, processor},
    see vision_backbone.VisionBackbone), whose preprocessing undoes the data module's `pixel_scaling`.
    A prediction lists every class's probability, or with `predict_top_k` the k most probable classes'.

    With a backbone: `freeze_backbone_epochs` and `layerwise_lr_decay` (see finetune.BackboneFinetuning),
    and `export_dir`, which receives the best weights and an image processor config via save_pretrained
    at the end of fitting. Either way: `label_smoothing` and `mixup_alpha` (0: off) shape the training loss.
    """

    def __init__(
        self,
        net: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/acc",
        mode: str = "max",
        init: str = "default",
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        class_names: Sequence[str] | None = None,
        pixel_scaling: dict[str, Any] | None = None,
        backbone: dict[str, Any] | None = None,
        freeze_backbone_epochs: int = 0,
        layerwise_lr_decay: float = 1.0,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        _check_options(net, backbone, freeze_backbone_epochs, layerwise_lr_decay, label_smoothing, mixup_alpha)
        self.save_hyperparameters()
        self.class_names = list(class_names or map(str, range(num_classes)))
        if backbone is not None:
            self.net = VisionBackbone(backbone, self.class_names, input_shape, pixel_scaling)
        else:
            self.build_net(net, init, input_shape=tuple(input_shape), num_outputs=num_classes)
        self.set_metrics(classification_metrics(num_classes), train=True)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    @property
    def model(self) -> nn.Module | None:
        """The Hugging Face model under a backbone's preprocessing; None for a plain net."""
        return self.net.model if isinstance(self.net, VisionBackbone) else None

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        return nn.functional.cross_entropy(logits, y), logits.argmax(dim=-1), y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        alpha, smoothing = self.hparams.get("mixup_alpha", 0.0), self.hparams.get("label_smoothing", 0.0)
        if alpha:
            mix = float(torch.distributions.Beta(alpha, alpha).sample())
            order = torch.randperm(len(y), device=y.device)
            logits = self(mix * x + (1 - mix) * x[order])
            loss = mix * nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
            loss = loss + (1 - mix) * nn.functional.cross_entropy(logits, y[order], label_smoothing=smoothing)
        else:
            logits = self(x)
            loss = nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
        self.train_predictions.add(logits.argmax(dim=-1), y)
        self.log_train_loss(loss, len(y))
        return loss

    def on_train_epoch_start(self) -> None:
        if self.model is not None:
            super().on_train_epoch_start()

    def parameter_groups(self) -> list[dict[str, Any]] | None:
        return super().parameter_groups() if self.model is not None else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the full config and processor settings: the checkpoint rebuilds the backbone offline
        if isinstance(self.net, VisionBackbone):
            checkpoint["hyper_parameters"]["backbone"] = self.net.checkpoint_backbone()

    def on_fit_end(self) -> None:
        if isinstance(self.net, VisionBackbone) and self.hparams.get("export_dir") and self.trainer.is_global_zero:
            self.export(self.hparams.export_dir)

    def export(self, target: str) -> None:
        """The backbone with its head (the best checkpoint's weights where one was kept) via save_pretrained,
        with the class names as id2label and an image processor config: a folder that
        AutoModelForImageClassification / AutoImageProcessor load and litforge takes as a backbone."""
        best = best_checkpoint(self)
        state = None
        if best:
            saved = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            state = {k.removeprefix("net.model."): v for k, v in saved.items() if k.startswith("net.model.")}
        self.net.export(target, state)
        log.info("Hugging Face model%s exported to %s", f" of {Path(best).name}" if best else "", target)

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
