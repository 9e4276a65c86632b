"""What the Hugging Face tasks share: the tokenizer carried in the checkpoint, the backbone's full
config in the checkpoint, forward on the model's own inputs, and the Hugging Face export."""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from litforge.data.text.tokenizer import tokenizer_from_files
from litforge.tasks.base import TaskModule
from litforge.tasks.hf_backbone import build_backbone, checkpoint_backbone, input_names
from litforge.utils.compat import attached_trainer
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


class HFTaskModule(TaskModule):
    """A task on a Hugging Face model. Subclasses call `save_hyperparameters(ignore=["tokenizer_files"])`
    and `build(auto_class, backbone, tokenizer_files, ...)` in `__init__`; `backbone` is
    {pretrained_model_name_or_path, config} (see hf_backbone.build_backbone).

    `tokenizer_files` (the data module's tokenizer as file texts, see data.tokenizer.tokenizer_files)
    is kept out of the logged hyperparameters (hundreds of kB for a hub tokenizer) and put into each
    checkpoint's instead, so `cls(**checkpoint["hyper_parameters"])` has the tokenizer it trained
    with. `export_dir`, if set, receives the best weights and the tokenizer in Hugging Face format
    (`save_pretrained`) at the end of fitting.
    """

    prediction_file = "predictions.jsonl"

    def build(
        self,
        auto_class: Any,
        backbone: dict[str, Any],
        tokenizer_files: dict[str, str] | None,
        id2label: Sequence[str] | None = None,
        num_labels: int | None = None,
    ) -> None:
        """`self.model` with its tokenizer (`self.tokenizer`, None without `tokenizer_files`); with
        `id2label`, a head of `num_labels` outputs (default: one per label) named by it, kept as `self.id2label`."""
        self.tokenizer_files = dict(tokenizer_files) if tokenizer_files else None
        self.tokenizer = tokenizer_from_files(self.tokenizer_files) if self.tokenizer_files else None
        head: dict[str, Any] = {}
        if id2label is not None:
            self.id2label = list(id2label)
            head = {
                "num_labels": len(self.id2label) if num_labels is None else num_labels,
                "id2label": dict(enumerate(self.id2label)),
                "label2id": {name: i for i, name in enumerate(self.id2label)},
            }
        self.model = build_backbone(auto_class, backbone, self.tokenizer, **head)
        self.inputs = input_names(self.model)

    def forward(self, batch: dict[str, Any]) -> Tensor:
        return self.model(**{k: v for k, v in batch.items() if k in self.inputs and k != "labels"}).logits

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hyper_parameters"]["backbone"] = checkpoint_backbone(self.model)
        checkpoint["hyper_parameters"]["tokenizer_files"] = self.tokenizer_files

    def on_predict_start(self) -> None:
        if self.tokenizer is None:
            raise UserError("this checkpoint carries no tokenizer, so it cannot tokenise new inputs")
        super().on_predict_start()

    def on_fit_end(self) -> None:
        if self.hparams.get("export_dir") and self.trainer.is_global_zero:
            self.export(self.hparams.export_dir)

    def export(self, target: str) -> None:
        """The model (best checkpoint's weights where one was kept) and tokenizer via save_pretrained:
        a folder `transformers.pipeline` and `from_pretrained` load, and litforge takes as a backbone."""
        callback = getattr(attached_trainer(self), "checkpoint_callback", None)
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        state = None
        if best:
            saved = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            state = {k.removeprefix("model."): v for k, v in saved.items() if k.startswith("model.")}
        self.model.save_pretrained(target, state_dict=state)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(target)
        log.info("Hugging Face model%s exported to %s", f" of {Path(best).name}" if best else "", target)
