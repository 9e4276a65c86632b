"""Plain text tokenised for masked language modelling: line by line or grouped into blocks,
masked anew every epoch for training and once, with a fixed seed, for validation and test."""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import DataCollatorForLanguageModeling, DataCollatorForTokenClassification, DataCollatorWithPadding

from litforge.data.splits import carve_missing_splits
from litforge.data.text import masked_lm_sources as mlm_sources
from litforge.data.text.base import HFTextDataModule
from litforge.data.text.predict_inputs import KeepFields, read_texts, request_text
from litforge.data.text.tokenizer import fingerprint, texts_fingerprint, tokenizer_fingerprint
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


def encode(tokenizer: Any, texts: list[str], max_length: int, line_by_line: bool) -> dict[str, list]:
    """Token ids with special-token masks and character offsets (whole-word masking finds words by
    them). Line by line: one truncated example per text; else the texts' tokens run on and are cut
    into blocks of `max_length`, [CLS] and [SEP] included, so no token is lost to truncation."""
    if line_by_line:
        encoded = tokenizer(
            texts, truncation=True, max_length=max_length, return_special_tokens_mask=True, return_offsets_mapping=True
        )
        return {k: encoded[k] for k in ("input_ids", "special_tokens_mask", "offset_mapping")}
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    ids = [i for row in encoded["input_ids"] for i in row]
    offsets = [o for row in encoded["offset_mapping"] for o in row]
    size = max_length - 2
    blocks: dict[str, list] = {"input_ids": [], "special_tokens_mask": [], "offset_mapping": []}
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        blocks["input_ids"].append([tokenizer.cls_token_id, *chunk, tokenizer.sep_token_id])
        blocks["special_tokens_mask"].append([1, *[0] * len(chunk), 1])
        blocks["offset_mapping"].append([(0, 0), *offsets[start : start + size], (0, 0)])
    return blocks


class PadOffsets:
    """The LM collator pads ids and masks but not offset_mapping, which whole-word masking needs."""

    def __init__(self, collator: DataCollatorForLanguageModeling) -> None:
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        longest = max(len(f["input_ids"]) for f in features)
        padded = [
            {**f, "offset_mapping": [*f["offset_mapping"], *[[0, 0]] * (longest - len(f["input_ids"]))]}
            for f in features
        ]
        return self.collator(padded)


class MaskedLMDataModule(HFTextDataModule):
    """Texts from the generated corpus, a hub data set or the user's files, and the tokenizer
    (pretrained, or WordPiece trained on the training text) handed to the model.

    Tokenised splits are cached under `data_dir`/mlm_cache, keyed by the texts, the tokenizer and
    the blocking settings. Validation and test are masked once with `seed`, so their loss compares
    across epochs and runs; training batches are masked at random each time (dynamic masking).

    `test_path` (`test_file` is its older name) is the test file of any source. With a
    checkpoint's tokenizer loaded, `setup("test")` reads that file alone and `setup("predict")`
    the texts with mask tokens that `predict_path` names (see predict_inputs.read_texts), one
    example each, cut at `max_length` tokens as in training: neither needs the training data.
    """

    hub_example = "wikitext"
    file_kind = "text file"
    cache = "mlm_cache"
    labelled = False

    def __init__(
        self,
        text_column: str = "text",
        num_examples: int = 4000,
        vocab_size: int = 1000,
        lowercase: bool = True,
        max_length: int = 128,
        line_by_line: bool = False,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(vocab_size=vocab_size, lowercase=lowercase, max_length=max_length, **common)
        if not 0 < mlm_probability < 1:
            raise UserError(f"data.mlm_probability={mlm_probability}: give the fraction of tokens to mask, in (0, 1)")

    @property
    def texts(self) -> dict[str, list[str]]:
        """Each split's texts."""
        return self.examples

    def _load_generated(self) -> dict[str, list[str]]:
        return {"train": mlm_sources.generate_corpus(self.hparams.num_examples, self.hparams.seed)}

    def _load_files(self) -> dict[str, list[str]]:
        hp = self.hparams
        return mlm_sources.load_files(hp.train_file, hp.val_file, self.test_path, hp.text_column)

    def _load_hub(self, splits: dict[str, str | None]) -> dict[str, list[str]]:
        hp = self.hparams
        return mlm_sources.read_hub(hp.name, hp.config_name, hp.data_dir, splits, hp.text_column)

    def _test_file(self) -> list[str]:
        return mlm_sources.read_text_file(self.test_path, "data.test_path", self.hparams.text_column)

    def _prepare(self, raw: dict[str, list[str]]) -> dict[str, list[str]]:
        """The splits' texts, none empty, validation and test cut from training (seeded) where missing."""
        hp = self.hparams
        for role, texts in raw.items():
            if not texts:
                raise UserError(f"the {role} split holds no text (data.source={hp.source}): give a non-empty one")
        if "train" not in raw:
            return raw
        return carve_missing_splits(raw, hp.val_fraction, hp.test_fraction, hp.seed)

    def _training_texts(self) -> list[str]:
        return self.texts["train"]

    def _set_tokenizer(self, tokenizer: Any, files: dict[str, str] | None = None) -> None:
        if tokenizer.mask_token is None:
            raise UserError(f"data.tokenizer={self.hparams.tokenizer} has no mask token, so it cannot do masked LM")
        super()._set_tokenizer(tokenizer, files)

    def _masked_examples(self, ids: list[str], texts: list[str], where: Callable[[int], str]) -> list[dict[str, Any]]:
        """Each text's token ids beside its id and text; a text needs a mask token that survives
        truncation (`where(row)` names it in the message)."""
        hp, mask = self.hparams, self.tokenizer.mask_token
        encoded = self.tokenizer(texts, truncation=True, max_length=hp.max_length)
        names = [k for k in self.tokenizer.model_input_names if k in encoded]
        examples = []
        for row, (id_, text) in enumerate(zip(ids, texts, strict=True)):
            if self.tokenizer.mask_token_id not in encoded["input_ids"][row]:
                limit = f"its {mask} only after the first {hp.max_length} tokens (data.max_length of training)"
                raise UserError(
                    f"{where(row)}: {text[:80]!r} has {limit if mask in text else 'no ' + mask}. "
                    f"Put {mask} where a token should be predicted, within the length the model was trained on."
                )
            examples.append({**{k: encoded[k][row] for k in names}, "id": id_, "text": text})
        return examples

    def _predict_examples(self) -> list[dict[str, Any]]:
        """The texts `predict_path` names."""
        hp = self.hparams
        ids, columns = read_texts(hp.predict_path, hp.text_column)
        examples = self._masked_examples(ids, columns["text"], lambda row: f"{hp.predict_path} (id {ids[row]})")
        log.info("predict: %d texts from %s", len(examples), hp.predict_path)
        return examples

    def _item_examples(self, items: list[Any], ids: list[str]) -> list[dict[str, Any]]:
        texts = [request_text(item, f"texts[{i}]") for i, item in enumerate(items)]
        return self._masked_examples(ids, texts, lambda row: f"texts[{row}]")

    def predict_schema(self) -> dict[str, Any]:
        return {**super().predict_schema(), "mask_token": self.tokenizer.mask_token}

    def _encode(self, role: str) -> Any:
        """The split's tokens; validation and test masked once."""
        tokens = self._tokenize(role)
        if role == "train":
            return tokens
        masked = self._mask_once(tokens)
        if role == "test" and self.test_path:
            log.info("test split: %d texts from %s", len(self.texts["test"]), self.test_path)
        return masked

    def _tokenize(self, role: str) -> Any:
        import datasets

        hp = self.hparams
        key = fingerprint(
            texts_fingerprint(self.texts[role]), tokenizer_fingerprint(self.tokenizer), hp.max_length, hp.line_by_line
        )
        cache_file = Path(hp.data_dir) / self.cache / "tokens" / f"{role}-{key}.arrow"
        if cache_file.is_file():
            dataset = datasets.Dataset.from_file(str(cache_file))
        else:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            dataset = datasets.Dataset.from_dict({"text": self.texts[role]}).map(
                lambda batch: encode(self.tokenizer, batch["text"], hp.max_length, hp.line_by_line),
                batched=True,
                remove_columns=["text"],
                cache_file_name=str(cache_file),
                desc="tokenising",
            )
        log.info(
            "%s split: %d %s, tokens cached in %s",
            role,
            len(dataset),
            "lines" if hp.line_by_line else "blocks",
            cache_file,
        )
        return dataset

    def _masker(self, seed: int | None) -> PadOffsets:
        hp = self.hparams
        # whole words are only ever replaced by [MASK]: the collator has no 80/10/10 for them
        replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if hp.whole_word_mask else {}
        collator = DataCollatorForLanguageModeling(
            self.tokenizer, mlm_probability=hp.mlm_probability, whole_word_mask=hp.whole_word_mask, seed=seed, **replace
        )
        return PadOffsets(collator)

    def _mask_once(self, dataset: Any) -> Any:
        """The split masked one example at a time by a collator seeded with `seed`: the same masks
        in every validation pass, and independent of the batch size."""
        import datasets

        collator = self._masker(self.hparams.seed)
        masked: dict[str, list] = {"input_ids": [], "labels": []}
        for example in dataset:
            batch = collator([example])
            masked["input_ids"].append(batch["input_ids"][0].tolist())
            masked["labels"].append(batch["labels"][0].tolist())
        masked["attention_mask"] = [[1] * len(ids) for ids in masked["input_ids"]]
        return datasets.Dataset.from_dict(masked)

    def _train_collator(self) -> PadOffsets:
        # training masks with the global torch generator, which Lightning seeds (workers too)
        return self._masker(None)

    def _collator(self) -> DataCollatorForTokenClassification:
        """Validation and test come masked: padding ids and labels (-100) is all that is left."""
        return DataCollatorForTokenClassification(self.tokenizer)

    def _predict_collator(self) -> KeepFields:
        return KeepFields(DataCollatorWithPadding(self.tokenizer), ("id", "text"))
