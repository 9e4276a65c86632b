"""Labelled texts (or text pairs) tokenised for a Hugging Face encoder, padded per batch."""

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from litforge.data import text_checks, text_sources
from litforge.data.memory import carve_missing_splits
from litforge.data.tokenizer import (
    fingerprint,
    run_tokenizer,
    texts_fingerprint,
    tokenize,
    tokenizer_fingerprint,
)
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("generated", "hub", "files")
SPLITS = ("train", "validation", "test")
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",), "predict": ("test",)}


class TextDataModule(L.LightningDataModule):
    """Texts from the generated corpus, a hub data set or the user's files; label names and the
    tokenizer (pretrained, or WordPiece trained on the training text) are handed to the model.

    Tokenised splits are cached under `data_dir`/text_cache, keyed by the split's texts and
    labels, the tokenizer and `max_length`, so an unchanged second run does not tokenise again.
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
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        num_examples: int = 4000,
        label_noise: float = 0.0,
        tokenizer: str | None = None,
        vocab_size: int = 1000,
        lowercase: bool = True,
        max_length: int = 128,
        tokenizer_dir: str = "tokenizer",
        data_dir: str = "data",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        group_by_length: bool = False,
        seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {SOURCES}")
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise UserError(
                f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: each in [0, 1) "
                "and together below 1, so some data is left to train on"
            )
        if batch_size < 1 or max_length < 4:
            raise UserError(f"data.batch_size={batch_size}, data.max_length={max_length}: give at least 1 and 4")
        self.save_hyperparameters()
        # an attribute, so Lightning's batch-size finder can scale it
        self.batch_size = batch_size
        self.id2label: list[str] | None = None
        self.tokenizer_dir: str | None = None
        self.tokenizer: Any = None
        self.tokenizer_key = ""
        self.texts: dict[str, dict[str, list]] = {}
        self.splits: dict[str, Any] = {}
        self.train_lengths: list[int] = []

    @property
    def text_columns(self) -> list[str]:
        return ["text", "text_pair"] if self.hparams.text_pair_column else ["text"]

    def _load(self) -> dict[str, text_sources.RawSplit]:
        hp = self.hparams
        if hp.source == "generated":
            return text_sources.load_generated(hp.num_examples, hp.seed, hp.label_noise)
        if hp.source == "files":
            return text_sources.load_files(hp.train_file, hp.val_file, hp.test_file)
        if not hp.name:
            raise UserError("data.source=hub needs data.name, a hub id such as stanfordnlp/sst2")
        splits = {"train": hp.train_split, "validation": hp.val_split, "test": hp.test_split}
        return text_sources.load_hub(hp.name, hp.config_name, hp.data_dir, splits)

    def prepare_data(self) -> None:
        if self.hparams.source == "hub":
            self._load()

    def _read(self) -> dict[str, dict[str, list]]:
        """Every split's texts and label ids, all checked before anything is written."""
        hp = self.hparams
        raw = self._load()
        columns = {"data.text_column": hp.text_column, "data.label_column": hp.label_column}
        if hp.text_pair_column:
            columns["data.text_pair_column"] = hp.text_pair_column
        text_checks.check_columns(raw, columns)
        read = {}
        for role, split in raw.items():
            read[role] = {"text": text_checks.read_texts(split, hp.text_column)}
            if hp.text_pair_column:
                read[role]["text_pair"] = text_checks.read_texts(split, hp.text_pair_column)
            read[role]["keys"] = text_checks.read_label_keys(split, hp.label_column)
        train_keys = read["train"]["keys"]
        self.id2label = self.id2label or text_checks.label_names(raw["train"], hp.label_column, train_keys)
        for role, split in raw.items():
            keys = read[role].pop("keys")
            read[role]["labels"] = text_checks.encode_labels(split, hp.label_column, keys, self.id2label)
        return self._carve(read)

    def _carve(self, read: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
        hp = self.hparams
        return carve_missing_splits(
            read,
            hp.val_fraction,
            hp.test_fraction,
            hp.seed,
            take=lambda columns, index: {name: [values[i] for i in index] for name, values in columns.items()},
        )

    def _tokenizer(self, train: dict[str, list]) -> Any:
        tokenizer, self.tokenizer_dir = run_tokenizer(
            self.tokenizer_dir, self.hparams, lambda: [t for c in self.text_columns for t in train[c]], "text_cache"
        )
        return tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            self.texts = self._read()
            self.tokenizer = self._tokenizer(self.texts["train"])
            self.tokenizer_key = tokenizer_fingerprint(self.tokenizer)
        for role in STAGE_SPLITS.get(stage or "", SPLITS):
            if role not in self.splits:
                self.splits[role] = self._tokenize(role)

    def _tokenize(self, role: str) -> Any:
        import datasets

        hp = self.hparams
        columns = self.texts[role]
        key = fingerprint(texts_fingerprint(*columns.values()), self.tokenizer_key, hp.max_length)
        cache_file = Path(hp.data_dir) / "text_cache" / "tokens" / f"{role}-{key}.arrow"
        dataset, cached = tokenize(
            datasets.Dataset.from_dict(columns), self.tokenizer, hp.max_length, self.text_columns, cache_file
        )
        log.info(
            "%s split: %d examples, tokens %s %s",
            role,
            len(dataset),
            "from cache" if cached else "cached to",
            cache_file,
        )
        truncated = int(dataset.with_format("numpy")["truncated"][:].sum())
        if truncated:
            log.warning(
                "%s split: %d of %d examples are longer than data.max_length=%d tokens and were truncated",
                role,
                truncated,
                len(dataset),
                hp.max_length,
            )
        if role == "train":
            self.train_lengths = dataset.with_format("numpy")["length"][:].tolist()
        keep = [c for c in [*self.tokenizer.model_input_names, "labels"] if c in dataset.column_names]
        return dataset.select_columns(keep)

    def _loader(self, role: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        sampler = None
        if shuffle and hp.group_by_length:
            from transformers.trainer_pt_utils import LengthGroupedSampler

            generator = torch.Generator().manual_seed(hp.seed)
            sampler = LengthGroupedSampler(self.batch_size, lengths=self.train_lengths, generator=generator)
        return DataLoader(
            self.splits[role],
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            collate_fn=DataCollatorWithPadding(self.tokenizer),
            num_workers=hp.num_workers,
            pin_memory=hp.pin_memory,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_labels": len(self.id2label), "id2label": list(self.id2label), "tokenizer_dir": self.tokenizer_dir}

    def state_dict(self) -> dict[str, Any]:
        return {"id2label": self.id2label, "tokenizer_dir": self.tokenizer_dir}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.id2label, self.tokenizer_dir = state["id2label"], state["tokenizer_dir"]
