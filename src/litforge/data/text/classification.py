"""Labelled texts (or text pairs) tokenised for a Hugging Face encoder, padded per batch."""

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import Sampler
from transformers import DataCollatorWithPadding

from litforge.data.loaders import EpochLengthGrouped
from litforge.data.splits import carve_missing_splits
from litforge.data.text import checks
from litforge.data.text.base import SPLITS, HFTextDataModule
from litforge.data.text.classification_sources import load_files, load_generated
from litforge.data.text.corpus import select_rows
from litforge.data.text.predict_inputs import KeepFields, encode_inputs, read_texts, request_text
from litforge.data.text.sources import RawSplit, load_hub, read_file
from litforge.data.text.tokenizer import ColumnTexts, column_fingerprint, fingerprint, tokenize, tokenizer_fingerprint
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


class TextDataModule(HFTextDataModule):
    """Texts from the generated corpus, a hub data set or the user's files; label names and the
    tokenizer (pretrained, or WordPiece trained on the training text) are handed to the model.

    The user's files are read in batches into memory-mapped Arrow tables, checked and tokenised a
    batch at a time, never held whole in memory. Tokenised splits are cached under
    `data_dir`/text_cache, keyed by the split's texts and labels, the tokenizer and `max_length`, so
    an unchanged second run does not tokenise again.

    `test_path` (`test_file` is its older name) is the test file of any source. With a
    checkpoint's state loaded (label names, tokenizer), `setup("test")` reads that file alone and
    `setup("predict")` the texts `predict_path` names (see predict_inputs.read_texts), cut at
    `max_length` tokens as in training: neither needs the training data. `label_names` names the
    integer labels 0, 1, ... of a label column.
    """

    hub_example = "stanfordnlp/sst2"
    file_kind = "labelled file"

    def __init__(
        self,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        label_names: list[str] | None = None,
        num_examples: int = 4000,
        label_noise: float = 0.0,
        vocab_size: int = 1000,
        lowercase: bool = True,
        max_length: int = 128,
        group_by_length: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(vocab_size=vocab_size, lowercase=lowercase, max_length=max_length, **common)
        names = [str(name) for name in label_names or []]
        if label_names is not None and (len(names) < 2 or len(set(names)) < len(names)):
            raise UserError(
                f"data.label_names={label_names}: give two or more distinct names, the first for label 0, "
                "e.g. data.label_names=[negative,positive]"
            )
        self.tokenizer_key = ""
        self.train_lengths: list[int] = []
        self.label_keys: dict[str, checks.LabelKeys] = {}

    @property
    def texts(self) -> dict[str, Any]:
        """Each split's Arrow data set of the user's text (and pair) and label columns."""
        return self.examples

    @property
    def text_columns(self) -> list[str]:
        """The text fields of an input to predict."""
        return ["text", "text_pair"] if self.hparams.text_pair_column else ["text"]

    def _load_generated(self) -> dict[str, RawSplit]:
        hp = self.hparams
        return load_generated(hp.num_examples, hp.seed, hp.label_noise)

    def _load_files(self) -> dict[str, RawSplit]:
        return load_files(self.hparams.train_file, self.hparams.val_file, self.test_path, self._tables())

    def _load_hub(self, splits: dict[str, str | None]) -> dict[str, RawSplit]:
        return load_hub(self.hparams.name, self.hparams.config_name, self.hparams.data_dir, splits)

    def _test_file(self) -> RawSplit:
        return read_file(self.test_path, "data.test_path", self._tables())

    def _tables(self) -> Path:
        return Path(self.hparams.data_dir) / self.cache

    @property
    def _columns(self) -> list[str]:
        """The columns of the user's data a split keeps: text (and pair) and label."""
        hp = self.hparams
        return [hp.text_column, *([hp.text_pair_column] if hp.text_pair_column else []), hp.label_column]

    def _prepare(self, raw: dict[str, RawSplit]) -> dict[str, Any]:
        """The splits' text and label columns, every row checked before anything is written (val/test
        cut from training where missing, as index files onto its table)."""
        hp = self.hparams
        columns = {"data.text_column": hp.text_column, "data.label_column": hp.label_column}
        if hp.text_pair_column:
            columns["data.text_pair_column"] = hp.text_pair_column
        checks.check_columns(raw, columns)
        for split in raw.values():
            for column in self._columns[:-1]:
                checks.check_texts(split, column)
        keys = {role: checks.LabelKeys(split, hp.label_column, hp.label_names) for role, split in raw.items()}
        checked = set()
        if self.id2label is None:
            found = checks.check_labels(raw["train"], hp.label_column, keys["train"])
            names = hp.label_names or checks.label_names(raw["train"], hp.label_column, found)
            self.id2label = [str(name) for name in names]
            checked.add("train")
        for role, split in raw.items():
            if role not in checked:
                checks.check_labels(split, hp.label_column, keys[role], self.id2label)
        examples = {role: split.dataset.select_columns(self._columns) for role, split in raw.items()}
        # splits cut from training read its labels
        self.label_keys = {role: keys.get(role, keys.get("train")) for role in SPLITS}
        if "train" not in examples:
            return examples
        return carve_missing_splits(examples, hp.val_fraction, hp.test_fraction, hp.seed, take=select_rows)

    def _training_texts(self) -> ColumnTexts:
        return ColumnTexts(self.texts["train"], self._columns[:-1])

    def _set_tokenizer(self, tokenizer: Any, files: dict[str, str] | None = None) -> None:
        super()._set_tokenizer(tokenizer, files)
        self.tokenizer_key = tokenizer_fingerprint(tokenizer)

    def _examples(self, ids: list[str], texts: dict[str, list[str]]) -> tuple[list[dict[str, Any]], int]:
        """Each input's token ids beside its id and text(s), and how many were cut at `max_length`."""
        encoded, inputs = encode_inputs(self.tokenizer, texts, self.hparams.max_length)
        examples = [{**inputs[row], "id": id_, **{c: texts[c][row] for c in texts}} for row, id_ in enumerate(ids)]
        return examples, sum(bool(e.overflowing) for e in encoded.encodings)

    def _item_examples(self, items: list[Any], ids: list[str]) -> list[dict[str, Any]]:
        """Texts as strings, or for a text-pair model {"text": ..., "text_pair": ...} objects."""
        if not self.hparams.text_pair_column:
            return self._examples(ids, {"text": [request_text(item, f"texts[{i}]") for i, item in enumerate(items)]})[0]
        columns: dict[str, list[str]] = {"text": [], "text_pair": []}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise UserError(
                    f"texts[{i}]: this model classifies text pairs; give objects "
                    '{"text": "...", "text_pair": "..."}, not single texts.'
                )
            for name in columns:
                columns[name].append(request_text(item.get(name), f"texts[{i}].{name}"))
        return self._examples(ids, columns)[0]

    def _predict_examples(self) -> list[dict[str, Any]]:
        hp = self.hparams
        ids, texts = read_texts(hp.predict_path, hp.text_column, hp.text_pair_column)
        examples, truncated = self._examples(ids, texts)
        log.info("predict: %d texts from %s", len(examples), hp.predict_path)
        if truncated:
            log.warning(
                "predict: %d of %d texts are longer than data.max_length=%d tokens (the training length) and "
                "were truncated",
                truncated,
                len(examples),
                hp.max_length,
            )
        return examples

    def _encode(self, role: str) -> Any:
        hp = self.hparams
        examples, keys = self.texts[role], self.label_keys[role]
        contents = [column_fingerprint(examples, column) for column in self._columns]
        key = fingerprint(*contents, keys.state(), self.id2label, self.tokenizer_key, hp.max_length)
        cache_file = self._tables() / "tokens" / f"{role}-{key}.arrow"
        labels = checks.LabelIds(hp.label_column, keys, self.id2label)
        dataset, cached = tokenize(examples, self.tokenizer, hp.max_length, self._columns[:-1], cache_file, labels)
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

    def _collator(self) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(self.tokenizer)

    def _predict_collator(self) -> KeepFields:
        return KeepFields(self._collator(), ("id", *self.text_columns))

    def _train_sampler(self) -> Sampler:
        if self.hparams.group_by_length:
            return EpochLengthGrouped(self.train_lengths, self.batch_size, self.hparams.seed)
        return super()._train_sampler()

    def predict_schema(self) -> dict[str, Any]:
        return {**super().predict_schema(), "text_pair": bool(self.hparams.text_pair_column)}

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.id2label),
            "id2label": list(self.id2label),
            "tokenizer_files": self.tokenizer_files,
        }
