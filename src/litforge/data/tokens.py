"""Tagged sentences (NER and other token tagging) tokenised for a Hugging Face encoder."""

import logging
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorForTokenClassification

from litforge.data import token_sources
from litforge.data.conll import SCHEMES, Sentence, to_iob2
from litforge.data.memory import carve_missing_splits
from litforge.data.token_align import align_labels, split_long
from litforge.data.tokenizer import run_tokenizer
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("generated", "hub", "files")
OVERFLOW = ("window", "truncate")


def label_list(sentences: list[Sentence]) -> list[str]:
    """O first, then each entity type's B- and I- tags, types sorted: the same list for the same data."""
    kinds = sorted({tag[2:] for s in sentences for tag in s.tags if tag != "O"})
    return ["O", *(f"{p}-{kind}" for kind in kinds for p in "BI")]


class PadWordStarts:
    """DataCollatorForTokenClassification (pads labels with -100) that also pads the
    first-sub-token flags, which metrics use to score each word once."""

    def __init__(self, tokenizer: Any) -> None:
        self.collate = DataCollatorForTokenClassification(tokenizer)
        self.left = tokenizer.padding_side == "left"

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        starts = [f["word_start"] for f in features]
        batch = self.collate([{k: v for k, v in f.items() if k != "word_start"} for f in features])
        width = batch["input_ids"].shape[1]
        padded = [[0] * (width - len(s)) + s if self.left else s + [0] * (width - len(s)) for s in starts]
        batch["word_start"] = torch.tensor(padded)
        return batch


class TokenDataModule(L.LightningDataModule):
    """Sentences with one tag per word from the generated corpus, a hub data set or CoNLL/jsonl
    files; tags converted to IOB2; label list and tokenizer handed to the model.

    `token_column`/`tag_column`: column names for hub data sets, column indices for CoNLL files.
    `overflow`: "window" splits sentences longer than `max_length` sub-tokens into several
    examples; "truncate" cuts them and reports how many were cut.
    """

    def __init__(
        self,
        source: str = "generated",
        name: str | None = None,
        config_name: str | None = None,
        train_split: str = "train",
        val_split: str | None = "validation",
        test_split: str | None = "test",
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        token_column: Any = 0,
        tag_column: Any = -1,
        tag_scheme: str = "iob2",
        labels: list[str] | None = None,
        label_all_subtokens: bool = False,
        overflow: str = "window",
        num_sentences: int = 3000,
        tokenizer: str | None = None,
        vocab_size: int = 2000,
        lowercase: bool = False,
        max_length: int = 64,
        tokenizer_dir: str = "tokenizer",
        data_dir: str = "data",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for key, value, valid in (("source", source, SOURCES), ("overflow", overflow, OVERFLOW)):
            if value not in valid:
                raise UserError(f"data.{key}={value!r} is not one of {valid}")
        if tag_scheme not in SCHEMES:
            raise UserError(f"data.tag_scheme={tag_scheme!r} is not one of {SCHEMES}")
        if batch_size < 1 or max_length < 4:
            raise UserError(f"data.batch_size={batch_size}, data.max_length={max_length}: give at least 1 and 4")
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.id2label: list[str] | None = list(labels) if labels else None
        self.tokenizer_dir: str | None = None
        self.tokenizer: Any = None
        self.sentences: dict[str, list[Sentence]] = {}
        self.splits: dict[str, list[dict[str, list[int]]]] = {}

    def _load(self) -> dict[str, list[Sentence]]:
        hp = self.hparams
        if hp.source == "generated":
            return token_sources.load_generated(hp.num_sentences, hp.seed)
        if hp.source == "files":
            files = {"train": hp.train_file, "validation": hp.val_file, "test": hp.test_file}
            return token_sources.load_files(files, hp.token_column, hp.tag_column)
        if not hp.name:
            raise UserError("data.source=hub needs data.name, a hub id such as lhoestq/conll2003")
        splits = {"train": hp.train_split, "validation": hp.val_split, "test": hp.test_split}
        return token_sources.load_hub(hp.name, hp.config_name, hp.data_dir, splits, hp.token_column, hp.tag_column)

    def prepare_data(self) -> None:
        if self.hparams.source == "hub":
            self._load()

    def _read(self) -> dict[str, list[Sentence]]:
        """Every split in IOB2 with tags from the label list, all checked before anything is written."""
        raw = {
            role: [Sentence(s.words, to_iob2(s.tags, self.hparams.tag_scheme, s.where), s.where) for s in sentences]
            for role, sentences in self._load().items()
        }
        self.id2label = self.id2label or label_list(raw["train"])
        known = set(self.id2label)
        for sentences in raw.values():
            for sentence in sentences:
                unknown = [t for t in sentence.tags if t not in known]
                if unknown:
                    raise UserError(
                        f"{sentence.where}: tag {unknown[0]!r} (as IOB2) is not in the label list {self.id2label} "
                        "(data.labels, or the tags of the training data). Fix the tag or add it to data.labels."
                    )
        return self._carve(raw)

    def _carve(self, raw: dict[str, list[Sentence]]) -> dict[str, list[Sentence]]:
        hp = self.hparams
        return carve_missing_splits(raw, hp.val_fraction, hp.test_fraction, hp.seed)

    def _tokenizer(self, train: list[Sentence]) -> Any:
        tokenizer, self.tokenizer_dir = run_tokenizer(
            self.tokenizer_dir, self.hparams, lambda: [" ".join(s.words) for s in train], "text_cache"
        )
        return tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            self.sentences = self._read()
            self.tokenizer = self._tokenizer(self.sentences["train"])
        for role in self.sentences:
            if role not in self.splits:
                self.splits[role] = self.encode(self.sentences[role], role)

    def encode(self, sentences: list[Sentence], role: str = "data") -> list[dict[str, list[int]]]:
        """input ids, sub-token labels and first-sub-token flags, one example per window."""
        hp = self.hparams
        if hp.overflow == "window":
            windows = split_long(sentences, self.tokenizer, hp.max_length)
            if len(windows) > len(sentences):
                log.info(
                    "%s: %d sentences became %d windows of at most data.max_length=%d sub-tokens",
                    role,
                    len(sentences),
                    len(windows),
                    hp.max_length,
                )
            sentences = windows
        index = {tag: i for i, tag in enumerate(self.id2label)}
        inside = [index.get("I-" + tag[2:], i) if tag.startswith("B-") else i for i, tag in enumerate(self.id2label)]
        encoded = self.tokenizer(
            [s.words for s in sentences], is_split_into_words=True, truncation=True, max_length=hp.max_length
        )
        examples, cut = [], 0
        for row, sentence in enumerate(sentences):
            word_ids = encoded.word_ids(row)
            cut += max((w for w in word_ids if w is not None), default=-1) < len(sentence.words) - 1
            labels, starts = align_labels(word_ids, [index[t] for t in sentence.tags], hp.label_all_subtokens, inside)
            example = {k: encoded[k][row] for k in self.tokenizer.model_input_names if k in encoded}
            examples.append({**example, "labels": labels, "word_start": starts})
        if cut:
            log.warning(
                "%s: %d of %d sentences are longer than data.max_length=%d sub-tokens and were truncated "
                "(data.overflow=window keeps them whole as several windows)",
                role,
                cut,
                len(sentences),
                hp.max_length,
            )
        return examples

    def _loader(self, role: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.splits[role],
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=PadWordStarts(self.tokenizer),
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def model_kwargs(self) -> dict[str, Any]:
        return {"id2label": list(self.id2label), "tokenizer_dir": self.tokenizer_dir}

    def state_dict(self) -> dict[str, Any]:
        return {"id2label": self.id2label, "tokenizer_dir": self.tokenizer_dir}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.id2label, self.tokenizer_dir = state["id2label"], state["tokenizer_dir"]
