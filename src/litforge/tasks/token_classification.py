"""Token classification (NER): a Hugging Face encoder with a tag per sub-token, scored per entity."""

import csv
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2
from torch import Tensor
from transformers import AutoModelForTokenClassification

from litforge.data.text.token_align import IGNORE
from litforge.tasks.hf_task import HFTaskModule
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

# one window's tags: (sentence index, its first word, gold tags, predicted tags)
Window = tuple[int, int, list[str], list[str]]


def entity_scores(gold: list[list[str]], pred: list[list[str]], strict: bool = False) -> dict[str, float]:
    """Micro entity-level precision/recall/F1 (seqeval; `strict`: IOB2 entities must be well formed)
    and the share of words tagged right."""
    options = {"mode": "strict", "scheme": IOB2} if strict else {}
    scores = {
        name: float(fn(gold, pred, zero_division=0, **options))
        for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))
    }
    return {**scores, "token_acc": float(accuracy_score(gold, pred)) if any(gold) else 0.0}


def whole_sentences(windows: list[Window]) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tags per sentence from its windows, so a sentence split into windows is
    scored as the one sequence it is in the file; each window counts once (a DistributedSampler
    repeats a few to give every rank as many)."""
    unique = {(sentence, first): (gold, pred) for sentence, first, gold, pred in windows}
    gold_tags: list[list[str]] = []
    pred_tags: list[list[str]] = []
    current = None
    for (sentence, _), (gold, pred) in sorted(unique.items()):
        if sentence != current:
            gold_tags.append([])
            pred_tags.append([])
            current = sentence
        gold_tags[-1] += gold
        pred_tags[-1] += pred
    return gold_tags, pred_tags


def entity_spans(
    tags: list[str], probs: list[float], words: list[str], text: str | None, spans: list[list[int]] | None
) -> list[dict[str, Any]]:
    """The entities of a tag sequence as {text, type, start, end, score}: character offsets into
    `text` (end exclusive) where the input was raw text, else word indices into `words`; the score
    is the mean probability of the entity's word tags."""
    entities = []
    for kind, first, last in get_entities(tags):
        score = round(sum(probs[first : last + 1]) / (last + 1 - first), 4)
        if text is None:
            start, end, shown = first, last + 1, " ".join(words[first : last + 1])
        else:
            start, end = spans[first][0], spans[last][1]
            shown = text[start:end]
        entities.append({"text": shown, "type": kind, "start": start, "end": end, "score": score})
    return entities


class TokenClassificationModule(HFTaskModule):
    """A Hugging Face encoder with a token-classification head, trained with cross-entropy on the
    labelled sub-tokens. `id2label` (IOB2 tags) and `tokenizer_files` come from the data module,
    `export_dir` see HFTaskModule.
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
        tokenizer_files: dict[str, str] | None = None,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        if not id2label:
            raise UserError("model: the token classifier needs the data's tag list (id2label)")
        self.save_hyperparameters(ignore=["tokenizer_files"])
        self.build(AutoModelForTokenClassification, backbone, tokenizer_files, id2label)
        # the windows of the current val/test epoch: entity metrics need whole sentences
        self.windows: list[Window] = []

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
        self.log_loss(stage, loss, len(batch["labels"]))
        starts = batch["word_start"].bool()
        where = zip(batch["sentence"].tolist(), batch["first_word"].tolist(), strict=True)
        rows = zip(where, batch["labels"], logits.argmax(-1), starts, strict=True)
        for (sentence, first), labels, predicted, start in rows:
            gold = [self.id2label[i] for i in labels[start].tolist()]
            pred = [self.id2label[i] for i in predicted[start].tolist()]
            self.windows.append((sentence, first, gold, pred))

    def _epoch_scores(self, stage: str) -> tuple[list[list[str]], list[list[str]]]:
        windows, self.windows = self.windows, []
        if dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, windows)
            windows = [w for part in gathered for w in part]
        gold, pred = whole_sentences(windows)
        for name, value in entity_scores(gold, pred, self.hparams.strict).items():
            self.log(f"{stage}/{name}", value, prog_bar=stage == "val" and name == "f1")
        return gold, pred

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self.windows = []

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

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One record per input of a predict batch: its windows' tags put back in word order, the
        words a window truncated tagged O, and the entities (see `entity_spans`). The batch holds
        every window of its inputs: `input` (which input a window is of) and `first_word` beside the
        token ids, and per input `id`, `words`, `text` (None for given tokens) and `spans`."""
        best, index = (t.cpu() for t in self(batch).float().softmax(-1).max(-1))
        tags = [["O"] * len(words) for words in batch["words"]]
        probs = [[0.0] * len(words) for words in batch["words"]]
        starts = batch["word_start"].bool().cpu()
        windows = zip(batch["input"].tolist(), batch["first_word"].tolist(), starts, strict=True)
        for row, (item, first, starts) in enumerate(windows):
            for offset, position in enumerate(starts.nonzero().flatten().tolist()):
                tags[item][first + offset] = self.id2label[index[row, position]]
                probs[item][first + offset] = float(best[row, position])
        records = []
        for item, (id_, words, text, spans) in enumerate(
            zip(batch["id"], batch["words"], batch["text"], batch["spans"], strict=True)
        ):
            shown = {"tokens": words} if text is None else {"text": text}
            entities = entity_spans(tags[item], probs[item], words, text, spans)
            records.append({"id": id_, **shown, "entities": entities})
        return records
