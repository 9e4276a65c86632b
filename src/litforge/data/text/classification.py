"""Labelled texts (or text pairs) tokenised for a Hugging Face encoder, padded per batch."""

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as L
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from litforge.data.loaders import EpochLengthGrouped, EpochShuffle, own_generator, resumable_loader
from litforge.data.splits import carve_missing_splits
from litforge.data.text import checks as text_checks
from litforge.data.text import classification_sources as text_sources
from litforge.data.text import predict_inputs as text_predict
from litforge.data.text.tokenizer import (
    fingerprint,
    run_tokenizer,
    texts_fingerprint,
    tokenize,
    tokenizer_files,
    tokenizer_fingerprint,
    tokenizer_from_files,
)
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("generated", "hub", "files")
SPLITS = ("train", "validation", "test")
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}


class TextDataModule(L.LightningDataModule):
    """Texts from the generated corpus, a hub data set or the user's files; label names and the
    tokenizer (pretrained, or WordPiece trained on the training text) are handed to the model.

    Tokenised splits are cached under `data_dir`/text_cache, keyed by the split's texts and
    labels, the tokenizer and `max_length`, so an unchanged second run does not tokenise again.

    `test_path` (`test_file` is its older name) is the test file of any source. With a
    checkpoint's state loaded (label names, tokenizer), `setup("test")` reads that file alone and
    `setup("predict")` the texts `predict_path` names (see text_predict.read_texts), cut at
    `max_length` tokens as in training: neither needs the training data. `label_names` names the
    integer labels 0, 1, ... of a label column.
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
        test_path: str | None = None,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        label_names: list[str] | None = None,
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
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {SOURCES}")
        names = [str(name) for name in label_names or []]
        if label_names is not None and (len(names) < 2 or len(set(names)) < len(names)):
            raise UserError(
                f"data.label_names={label_names}: give two or more distinct names, the first for label 0, "
                "e.g. data.label_names=[negative,positive]"
            )
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
        self.tokenizer: Any = None
        self.tokenizer_files: dict[str, str] | None = None
        self.tokenizer_key = ""
        self.texts: dict[str, dict[str, list]] = {}
        self.splits: dict[str, Any] = {}
        self.train_lengths: list[int] = []

    @property
    def text_columns(self) -> list[str]:
        return ["text", "text_pair"] if self.hparams.text_pair_column else ["text"]

    @property
    def test_path(self) -> str | None:
        return self.hparams.test_path or self.hparams.test_file

    def _restored(self) -> bool:
        """Whether a checkpoint's state is loaded, so new data can be read without the training data."""
        return self.tokenizer is not None and self.id2label is not None

    def _load(self) -> dict[str, text_sources.RawSplit]:
        hp = self.hparams
        if hp.source == "generated":
            raw = text_sources.load_generated(hp.num_examples, hp.seed, hp.label_noise)
        elif hp.source == "files":
            return text_sources.load_files(hp.train_file, hp.val_file, self.test_path)
        elif not hp.name:
            raise UserError("data.source=hub needs data.name, a hub id such as stanfordnlp/sst2")
        else:
            test_split = None if self.test_path else hp.test_split
            splits = {"train": hp.train_split, "validation": hp.val_split, "test": test_split}
            raw = text_sources.load_hub(hp.name, hp.config_name, hp.data_dir, splits)
        if self.test_path:
            raw["test"] = text_sources.read_file(self.test_path, "data.test_path")
        return raw

    def prepare_data(self) -> None:
        # a checkpoint predicting or scoring a file of its own needs no download
        own_files = self._restored() and (self.hparams.predict_path or self.test_path)
        if self.hparams.source == "hub" and not own_files:
            self._load()

    def _read(self, roles: tuple[str, ...]) -> dict[str, dict[str, list]]:
        """The splits' texts and label ids, all checked before anything is written: a restored
        module with a test file reads only that for testing, else every split is read (and val/test
        cut from training where missing)."""
        hp = self.hparams
        if roles == ("test",) and self._restored():
            if self.test_path:
                raw = {"test": text_sources.read_file(self.test_path, "data.test_path")}
            else:
                text_sources.check_training_file(hp.source, hp.train_file, "labelled file")
                raw = self._load()
        else:
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
            read[role]["keys"] = self._label_keys(split)
        if self.id2label is None:
            train_keys = read["train"]["keys"]
            names = hp.label_names or text_checks.label_names(raw["train"], hp.label_column, train_keys)
            self.id2label = [str(name) for name in names]
        for role, split in raw.items():
            keys = read[role].pop("keys")
            read[role]["labels"] = text_checks.encode_labels(split, hp.label_column, keys, self.id2label)
        return read if "train" not in read else self._carve(read)

    def _label_keys(self, split: text_sources.RawSplit) -> list[str]:
        """The split's labels as text; with `label_names`, integer label k becomes its k-th name."""
        hp = self.hparams
        keys = text_checks.read_label_keys(split, hp.label_column)
        if not hp.label_names:
            return keys
        names = [str(name) for name in hp.label_names]
        valid = {str(k): name for k, name in enumerate(names)}
        bad = next((i for i, key in enumerate(keys) if key not in valid), None)
        if bad is not None:
            raise UserError(
                f"{split.where(bad)}: label {keys[bad]!r} in column {hp.label_column!r} is not one of the integers "
                f"0 to {len(names) - 1} that data.label_names={names} names. Give one name per integer label, "
                "or leave data.label_names unset for labels written as names."
            )
        return [valid[key] for key in keys]

    def _carve(self, read: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
        hp = self.hparams
        return carve_missing_splits(
            read,
            hp.val_fraction,
            hp.test_fraction,
            hp.seed,
            take=lambda columns, index: {name: [values[i] for i in index] for name, values in columns.items()},
        )

    def _set_tokenizer(self, tokenizer: Any, files: dict[str, str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.tokenizer_files = files or tokenizer_files(tokenizer)
        self.tokenizer_key = tokenizer_fingerprint(tokenizer)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        roles = STAGE_SPLITS.get(stage or "", SPLITS)
        if any(role not in self.texts for role in roles):
            self.texts = self._read(roles)
        if self.tokenizer is None:
            train = self.texts["train"]
            tokenizer = run_tokenizer(
                self.hparams, lambda: [t for c in self.text_columns for t in train[c]], "text_cache"
            )
            self._set_tokenizer(tokenizer)
        for role in roles:
            if role not in self.splits:
                self.splits[role] = self._tokenize(role)

    def _setup_predict(self) -> None:
        """The texts `predict_path` names, tokenised in memory (nothing cached for one-off inputs)."""
        if "predict" in self.splits:
            return
        hp = self.hparams
        text_predict.require_trained_tokenizer(self.tokenizer, " and label names")
        ids, texts = text_predict.read_texts(hp.predict_path, hp.text_column, hp.text_pair_column)
        encoded = self.tokenizer(*texts.values(), truncation=True, max_length=hp.max_length)
        names = [k for k in self.tokenizer.model_input_names if k in encoded]
        examples = [
            {**{k: encoded[k][row] for k in names}, "id": id_, **{c: texts[c][row] for c in texts}}
            for row, id_ in enumerate(ids)
        ]
        truncated = sum(bool(e.overflowing) for e in encoded.encodings)
        log.info("predict: %d texts from %s", len(examples), hp.predict_path)
        if truncated:
            log.warning(
                "predict: %d of %d texts are longer than data.max_length=%d tokens (the training length) and "
                "were truncated",
                truncated,
                len(examples),
                hp.max_length,
            )
        self.splits["predict"] = examples

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
            "%s split: %d examples%s, tokens %s %s",
            role,
            len(dataset),
            f" from {self.test_path}" if role == "test" and self.test_path else "",
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

    def _options(self) -> dict[str, Any]:
        hp = self.hparams
        return {
            "collate_fn": DataCollatorWithPadding(self.tokenizer),
            "num_workers": hp.num_workers,
            "pin_memory": hp.pin_memory,
            "persistent_workers": hp.num_workers > 0,
            "generator": own_generator(hp.seed),
        }

    def _loader(self, role: str) -> DataLoader:
        return DataLoader(self.splits[role], batch_size=self.batch_size, **self._options())

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if hp.group_by_length:
            sampler = EpochLengthGrouped(self.train_lengths, self.batch_size, hp.seed)
        else:
            sampler = EpochShuffle(len(self.splits["train"]), hp.seed)
        return resumable_loader(self.splits["train"], self.batch_size, sampler, self.trainer, **self._options())

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        options = self._options()
        collate = text_predict.KeepFields(options.pop("collate_fn"), ("id", *self.text_columns))
        return DataLoader(self.splits["predict"], batch_size=self.batch_size, collate_fn=collate, **options)

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.id2label),
            "id2label": list(self.id2label),
            "tokenizer_files": self.tokenizer_files,
        }

    def state_dict(self) -> dict[str, Any]:
        """Label names and the tokenizer's files: what eval and predict need besides the weights."""
        return {"id2label": self.id2label, "tokenizer_files": self.tokenizer_files}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.id2label = state["id2label"]
        self._set_tokenizer(tokenizer_from_files(state["tokenizer_files"]), state["tokenizer_files"])
