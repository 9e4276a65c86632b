"""Token classification (NER): a Hugging Face encoder with a tag per sub-token, scored per entity."""

import csv
import logging
import re
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2
from torch import Tensor
from transformers import AutoModelForTokenClassification

from litforge.data.token_align import IGNORE, subtoken_counts, word_windows
from litforge.data.tokenizer import load_tokenizer
from litforge.tasks.base import TaskModule
from litforge.tasks.hf_backbone import build_backbone, checkpoint_backbone, input_names
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

# words of raw text: runs of letters/digits (with inner hyphens or apostrophes) or one punctuation mark
WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")


def entity_scores(gold: list[list[str]], pred: list[list[str]], strict: bool = False) -> dict[str, float]:
    """Micro entity-level precision/recall/F1 (seqeval; `strict`: IOB2 entities must be well formed)
    and the share of words tagged right."""
    options = {"mode": "strict", "scheme": IOB2} if strict else {}
    scores = {
        name: float(fn(gold, pred, zero_division=0, **options))
        for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))
    }
    return {**scores, "token_acc": float(accuracy_score(gold, pred)) if any(gold) else 0.0}


class TokenClassificationModule(TaskModule):
    """A Hugging Face encoder with a token-classification head, trained with cross-entropy on the
    labelled sub-tokens. `backbone` is {pretrained_model_name_or_path, config} (see
    hf_backbone.build_backbone); `id2label` (IOB2 tags) and `tokenizer_dir` come from the data module.
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/f1",
        mode: str = "max",
        strict: bool = False,
        id2label: list[str] | None = None,
        tokenizer_dir: str | None = None,
    ) -> None:
        super().__init__()
        if not id2label:
            raise UserError("model: the token classifier needs the data's tag list (id2label)")
        self.save_hyperparameters()
        self.id2label = list(id2label)
        self.tokenizer = load_tokenizer(tokenizer_dir, "tokenizer_dir") if tokenizer_dir else None
        self.model = build_backbone(
            AutoModelForTokenClassification,
            backbone,
            self.tokenizer,
            num_labels=len(self.id2label),
            id2label=dict(enumerate(self.id2label)),
            label2id={name: i for i, name in enumerate(self.id2label)},
        )
        self.inputs = input_names(self.model)
        # tag sequences of the current val/test epoch: entity metrics need whole sentences
        self.gold: list[list[str]] = []
        self.pred: list[list[str]] = []

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(**{k: v for k, v in batch.items() if k in self.inputs and k != "labels"}).logits

    def _step(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = self(batch)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)
        return loss, logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self._step(batch)
        self.log_train_loss(loss, len(batch["labels"]))
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        loss, logits = self._step(batch)
        size = len(batch["labels"])
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True, batch_size=size)
        starts = batch["word_start"].bool()
        for labels, predicted, start in zip(batch["labels"], logits.argmax(-1), starts, strict=True):
            self.gold.append([self.id2label[i] for i in labels[start].tolist()])
            self.pred.append([self.id2label[i] for i in predicted[start].tolist()])

    def _epoch_scores(self, stage: str) -> tuple[list[list[str]], list[list[str]]]:
        gold, pred = self.gold, self.pred
        self.gold, self.pred = [], []
        if dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (gold, pred))
            gold = [s for g, _ in gathered for s in g]
            pred = [s for _, p in gathered for s in p]
        for name, value in entity_scores(gold, pred, self.hparams.strict).items():
            self.log(f"{stage}/{name}", value, prog_bar=stage == "val" and name == "f1")
        return gold, pred

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self.gold, self.pred = [], []

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._epoch_scores("val")

    def on_test_epoch_end(self) -> None:
        gold, pred = self._epoch_scores("test")
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            self.write_entity_report(gold, pred, Path(self.trainer.default_root_dir) / "entity_report.csv")

    def write_entity_report(self, gold: list[list[str]], pred: list[list[str]], path: Path) -> None:
        """Precision, recall, F1 and support per entity type and averaged, as a csv table."""
        options = {"mode": "strict", "scheme": IOB2} if self.hparams.strict else {}
        report = classification_report(gold, pred, output_dict=True, zero_division=0, **options)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["type", "precision", "recall", "f1", "support"])
            for kind, row in report.items():
                scores = [round(float(row[k]), 4) for k in ("precision", "recall", "f1-score")]
                writer.writerow([kind, *scores, int(row["support"])])
        log.info("entity report written to %s", path)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hyper_parameters"]["backbone"] = checkpoint_backbone(self.model)

    @torch.inference_mode()
    def predict_texts(self, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """Each text's entities as {text, type, start, end, score}: character offsets into the
        text (end exclusive) and the mean probability of the entity's word tags."""
        if self.tokenizer is None:
            raise UserError("this checkpoint carries no tokenizer_dir, so it cannot tokenise new texts")
        max_length = min(self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", 512))
        budget = max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        spans = [[m.span() for m in WORD.finditer(text)] for text in texts]
        words = [[text[a:b] for a, b in span] for text, span in zip(texts, spans, strict=True)]
        # windows (text index, first word, end word), so long texts are tagged whole
        windows = [
            (i, start, end)
            for i, counts in enumerate(subtoken_counts(self.tokenizer, words))
            for start, end in word_windows(counts, budget)
        ]
        tags: list[list[str]] = [[] for _ in texts]
        probs: list[list[float]] = [[] for _ in texts]
        self.eval()
        for first in range(0, len(windows), batch_size):
            chunk = windows[first : first + batch_size]
            batch = self.tokenizer(
                [words[i][a:b] for i, a, b in chunk],
                is_split_into_words=True,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            best, index = self(batch.to(self.device)).softmax(-1).max(-1)
            for row, (i, a, b) in enumerate(chunk):
                first_subtoken = {}
                for position, word in enumerate(batch.word_ids(row)):
                    if word is not None:
                        first_subtoken.setdefault(word, position)
                for word in range(b - a):
                    position = first_subtoken.get(word)
                    tags[i].append(self.id2label[index[row, position]] if position is not None else "O")
                    probs[i].append(float(best[row, position]) if position is not None else 0.0)
        records = []
        for text, span, tag, prob in zip(texts, spans, tags, probs, strict=True):
            entities = []
            for kind, a, b in get_entities(tag):
                start, end = span[a][0], span[b][1]
                score = sum(prob[a : b + 1]) / (b + 1 - a)
                entities.append(
                    {"text": text[start:end], "type": kind, "start": start, "end": end, "score": round(score, 4)}
                )
            records.append({"text": text, "entities": entities})
        return records
