"""Labelled texts (or text pairs) tokenised for a Hugging Face encoder, padded per batch."""

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import Sampler
from transformers import DataCollatorWithPadding

from litforge.data.loaders import EpochLengthGrouped
from litforge.data.splits import carve_missing_splits
from litforge.data.text import checks
from litforge.data.text.base import HFTextDataModule
from litforge.data.text.classification_sources import load_files, load_generated
from litforge.data.text.predict_inputs import KeepFields, encode_inputs, read_texts, request_text
from litforge.data.text.sources import RawSplit, load_hub, read_file
from litforge.data.text.tokenizer import fingerprint, texts_fingerprint, tokenize, tokenizer_fingerprint
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


class TextDataModule(HFTextDataModule):
    """Texts from the generated corpus, a hub data set or the user's files; label names and the
    tokenizer (pretrained, or WordPiece trained on the training text) are handed to the model.

    Tokenised splits are cached under `data_dir`/text_cache, keyed by the split's texts and
    labels, the tokenizer and `max_length`, so an unchanged second run does not tokenise again.

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

    @property
    def texts(self) -> dict[str, dict[str, list]]:
        """Each split's columns: text (and text_pair) and label ids."""
        return self.examples

    @property
    def text_columns(self) -> list[str]:
        return ["text", "text_pair"] if self.hparams.text_pair_column else ["text"]

    def _load_generated(self) -> dict[str, RawSplit]:
        hp = self.hparams
        return load_generated(hp.num_examples, hp.seed, hp.label_noise)

    def _load_files(self) -> dict[str, RawSplit]:
        return load_files(self.hparams.train_file, self.hparams.val_file, self.test_path)

    def _load_hub(self, splits: dict[str, str | None]) -> dict[str, RawSplit]:
        return load_hub(self.hparams.name, self.hparams.config_name, self.hparams.data_dir, splits)

    def _test_file(self) -> RawSplit:
        return read_file(self.test_path, "data.test_path")

    def _prepare(self, raw: dict[str, RawSplit]) -> dict[str, dict[str, list]]:
        """The splits' texts and label ids (val/test cut from training where missing)."""
        hp = self.hparams
        columns = {"data.text_column": hp.text_column, "data.label_column": hp.label_column}
        if hp.text_pair_column:
            columns["data.text_pair_column"] = hp.text_pair_column
        checks.check_columns(raw, columns)
        read = {}
        for role, split in raw.items():
            read[role] = {"text": checks.read_texts(split, hp.text_column)}
            if hp.text_pair_column:
                read[role]["text_pair"] = checks.read_texts(split, hp.text_pair_column)
            read[role]["keys"] = self._label_keys(split)
        if self.id2label is None:
            train_keys = read["train"]["keys"]
            names = hp.label_names or checks.label_names(raw["train"], hp.label_column, train_keys)
            self.id2label = [str(name) for name in names]
        for role, split in raw.items():
            keys = read[role].pop("keys")
            read[role]["labels"] = checks.encode_labels(split, hp.label_column, keys, self.id2label)
        if "train" not in read:
            return read
        return carve_missing_splits(
            read,
            hp.val_fraction,
            hp.test_fraction,
            hp.seed,
            take=lambda columns, index: {name: [values[i] for i in index] for name, values in columns.items()},
        )

    def _label_keys(self, split: RawSplit) -> list[str]:
        """The split's labels as text; with `label_names`, integer label k becomes its k-th name."""
        hp = self.hparams
        keys = checks.read_label_keys(split, hp.label_column)
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

    def _training_texts(self) -> list[str]:
        train = self.texts["train"]
        return [text for column in self.text_columns for text in train[column]]

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
        import datasets

        hp = self.hparams
        columns = self.texts[role]
        key = fingerprint(texts_fingerprint(*columns.values()), self.tokenizer_key, hp.max_length)
        cache_file = Path(hp.data_dir) / self.cache / "tokens" / f"{role}-{key}.arrow"
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
