"""Masked language modelling: pre-training from scratch or continued (domain-adaptive)
pre-training of a Hugging Face encoder, with fill-mask prediction and a Hugging Face export."""

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from transformers import AutoModelForMaskedLM

from litforge.tasks.hf_task import HFTaskModule


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


class MaskedLanguageModelingModule(HFTaskModule):
    """A Hugging Face encoder with its masked-LM head; `tokenizer_files` comes from the data module.
    `export_dir` (see HFTaskModule) is a folder that text classification takes as its backbone."""

    # fill-mask candidates per mask where predict.top_k is not given
    default_top_k = 5

    def __init__(
        self,
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        mode: str = "min",
        export_dir: str | None = None,
        tokenizer_files: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer_files"])
        self.build(AutoModelForMaskedLM, backbone, tokenizer_files)
        self.val_metrics = MaskedTokenMetrics()
        self.test_metrics = MaskedTokenMetrics()

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

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per text of a predict batch (`id`, `text` beside the token ids): for each mask
        token, the `predict_top_k` most likely tokens with their probabilities, and the text filled
        with the most likely ones."""
        ids = batch["input_ids"]
        masked = ids == self.tokenizer.mask_token_id
        # the vocabulary's probabilities at the masks only, not at every position of the batch
        logits = self(batch)[masked].float()
        values, indices = logits.softmax(-1).topk(self.prediction_top_k(logits.shape[-1]))
        filled = ids.masked_scatter(masked, indices[:, 0]).cpu()
        masks: list[list[list[dict[str, Any]]]] = [[] for _ in range(len(ids))]
        for (row, _), p, i in zip(masked.nonzero().tolist(), values.tolist(), indices.tolist(), strict=True):
            tokens = self.tokenizer.convert_ids_to_tokens(i)
            masks[row].append([{"token": t, "score": round(v, 6)} for t, v in zip(tokens, p, strict=True)])
        attention = batch["attention_mask"].bool().cpu()
        return [
            {
                "id": id_,
                "text": text,
                "filled": self.tokenizer.decode(filled[row][attention[row]], skip_special_tokens=True),
                "masks": masks[row],
            }
            for row, (id_, text) in enumerate(zip(batch["id"], batch["text"], strict=True))
        ]
