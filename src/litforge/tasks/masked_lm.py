"""Masked language modelling: pre-training from scratch or continued (domain-adaptive)
pre-training of a Hugging Face encoder, with fill-mask prediction and a Hugging Face export."""

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from transformers import AutoModelForMaskedLM

from litforge.data.tokenizer import load_tokenizer
from litforge.tasks.base import TaskModule
from litforge.tasks.hf_backbone import build_backbone, checkpoint_backbone, input_names
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


class MaskedTokenMetrics(Metric):
    """Loss, perplexity and accuracy over all masked tokens of a split. Perplexity is exp of the
    summed token losses over the number of masked tokens, not a mean of per-batch perplexities,
    which would weigh a batch with few masked tokens as much as one with many."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("loss_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        masked = labels != -100
        logits, targets = logits[masked], labels[masked]
        self.loss_sum += torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum").double()
        self.correct += (logits.argmax(-1) == targets).sum()
        self.count += masked.sum()

    def compute(self) -> dict[str, Tensor]:
        # a split without masked tokens gives NaN, not a perfect score
        loss = self.loss_sum / self.count
        return {"loss": loss.float(), "perplexity": loss.exp().float(), "acc": (self.correct / self.count).float()}


class MaskedLanguageModelingModule(TaskModule):
    """A Hugging Face encoder with its masked-LM head. `backbone` is {pretrained_model_name_or_path,
    config} (see hf_backbone.build_backbone); `tokenizer_dir` comes from the data module.
    `export_dir`, if set, receives the best weights and the tokenizer in Hugging Face format at
    the end of fitting, a folder that text classification takes as its backbone."""

    def __init__(
        self,
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        mode: str = "min",
        export_dir: str | None = None,
        tokenizer_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = load_tokenizer(tokenizer_dir, "tokenizer_dir") if tokenizer_dir else None
        self.model = build_backbone(AutoModelForMaskedLM, backbone, self.tokenizer)
        self.inputs = input_names(self.model)
        self.val_metrics = MaskedTokenMetrics()
        self.test_metrics = MaskedTokenMetrics()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(**{k: v for k, v in batch.items() if k in self.inputs and k != "labels"}).logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
        self.log_train_loss(loss, len(logits))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self(batch), batch["labels"])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_metrics.update(self(batch), batch["labels"])

    def _log_split(self, metrics: MaskedTokenMetrics, stage: str) -> None:
        # logged once per epoch from the summed states (synced across processes by torchmetrics)
        values = metrics.compute()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val")
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_split(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_split(self.test_metrics, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hyper_parameters"]["backbone"] = checkpoint_backbone(self.model)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.export(self.hparams.export_dir)

    def export(self, target: str) -> None:
        """The backbone (best checkpoint's weights where one was kept) and tokenizer via save_pretrained."""
        callback = self.trainer.checkpoint_callback if self._trainer is not None else None
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        state = None
        if best:
            saved = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            state = {k.removeprefix("model."): v for k, v in saved.items() if k.startswith("model.")}
        self.model.save_pretrained(target, state_dict=state)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(target)
        log.info("Hugging Face model%s exported to %s", f" of {Path(best).name}" if best else "", target)

    @torch.inference_mode()
    def predict_texts(self, texts: list[str], top_k: int = 5) -> list[dict[str, Any]]:
        """For each mask token of each text, the `top_k` most likely tokens with their probabilities,
        and the text filled with the most likely ones."""
        if self.tokenizer is None:
            raise UserError("this checkpoint carries no tokenizer_dir, so it cannot tokenise new texts")
        if top_k < 1:
            raise UserError(f"predict.top_k={top_k}: give at least 1")
        mask = self.tokenizer.mask_token
        for text in texts:
            if mask not in text:
                raise UserError(f"predict: {text!r} has no {mask}; put {mask} where a token should be predicted")
        max_length = min(self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", 512))
        self.eval()
        batch = self.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        probs = self(batch.to(self.device)).softmax(-1).cpu()
        records = []
        for row, text in enumerate(texts):
            ids = batch["input_ids"][row].cpu()
            positions = (ids == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
            if not positions:
                raise UserError(f"predict: the {mask} of {text!r} was cut off at {max_length} tokens")
            filled, masks = ids.clone(), []
            for position in positions:
                values, indices = probs[row, position].topk(min(top_k, probs.shape[-1]))
                tokens = self.tokenizer.convert_ids_to_tokens(indices.tolist())
                masks.append(
                    {
                        "token": tokens[0],
                        "top_k": {t: round(v, 6) for t, v in zip(tokens, values.tolist(), strict=True)},
                    }
                )
                filled[position] = indices[0]
            sequence = self.tokenizer.decode(
                filled[batch["attention_mask"][row].bool().cpu()], skip_special_tokens=True
            )
            records.append({"text": text, "filled": sequence, "masks": masks})
        return records
