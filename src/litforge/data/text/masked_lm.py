"""Plain text tokenised for masked language modelling: line by line or grouped into blocks,
masked anew every epoch for training and once, with a fixed seed, for validation and test."""

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from transformers import DataCollatorForLanguageModeling, DataCollatorForTokenClassification, DataCollatorWithPadding

from litforge.data.loaders import StreamLoader
from litforge.data.splits import carve_missing_splits
from litforge.data.text import corpus
from litforge.data.text import masked_lm_sources as mlm_sources
from litforge.data.text.base import HFTextDataModule
from litforge.data.text.mlm_stream import MaskedLMStream, StreamCollate, load_streams
from litforge.data.text.predict_inputs import KeepFields, read_texts, request_text
from litforge.data.text.tokenizer import cached_map, column_fingerprint, fingerprint, tokenizer_fingerprint
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


# rows a tokenising or masking step takes at a time: the fixed validation masks depend on it, not
# on data.batch_size or data.num_proc
MAP_BATCH = 1000


def encode(
    tokenizer: Any, texts: list[str], max_length: int, line_by_line: bool, offsets: bool = True
) -> dict[str, list]:
    """Token ids with special-token masks and, with `offsets`, character offsets (whole-word
    masking finds words by them). Line by line: one truncated example per text; else the texts'
    tokens run on and are cut into blocks of `max_length`, [CLS] and [SEP] included, so no token
    is lost to truncation."""
    fields = ("input_ids", "special_tokens_mask", "offset_mapping")[: 3 if offsets else 2]
    if line_by_line:
        encoded = tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
            return_offsets_mapping=offsets,
        )
        return {k: encoded[k] for k in fields}
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=offsets)
    ids = [i for row in encoded["input_ids"] for i in row]
    size = max_length - 2
    blocks: dict[str, list] = {k: [] for k in fields}
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        blocks["input_ids"].append([tokenizer.cls_token_id, *chunk, tokenizer.sep_token_id])
        blocks["special_tokens_mask"].append([1, *[0] * len(chunk), 1])
    if offsets:
        spans = [o for row in encoded["offset_mapping"] for o in row]
        blocks["offset_mapping"] = [[(0, 0), *spans[s : s + size], (0, 0)] for s in range(0, len(ids), size)]
    return blocks


def token_features(offsets: bool) -> Any:
    """The cached columns' types: 32-bit ids and 8-bit masks, a quarter of what datasets infers."""
    import datasets

    ids = datasets.Sequence(datasets.Value("int32"))
    features = {"input_ids": ids, "special_tokens_mask": datasets.Sequence(datasets.Value("int8"))}
    if offsets:
        features["offset_mapping"] = datasets.Sequence(datasets.Sequence(datasets.Value("int32"), length=2))
    return datasets.Features(features)


class PadOffsets:
    """The LM collator pads ids and masks but not offset_mapping, which whole-word masking needs."""

    def __init__(self, collator: DataCollatorForLanguageModeling) -> None:
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if "offset_mapping" not in features[0]:
            return self.collator(features)
        longest = max(len(f["input_ids"]) for f in features)
        padded = [
            {**f, "offset_mapping": [*f["offset_mapping"], *[[0, 0]] * (longest - len(f["input_ids"]))]}
            for f in features
        ]
        return self.collator(padded)


def masker(tokenizer: Any, mlm_probability: float, whole_word_mask: bool, seed: int | None) -> PadOffsets:
    """The training collator: masks drawn with `seed`, or with the global torch RNG for None."""
    # whole words are only ever replaced by [MASK]: the collator has no 80/10/10 for them
    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word_mask else {}
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word_mask, seed=seed, **replace
    )
    return PadOffsets(collator)


class MaskedLMDataModule(HFTextDataModule):
    """Texts from the generated corpus, a hub data set or the user's files, and the tokenizer
    (pretrained, or WordPiece trained on the training text) handed to the model.

    Texts are memory-mapped Arrow tables (see litforge.data.text.corpus), never Python lists: the
    user's files are read in batches into `data_dir`/mlm_cache/corpora, keyed by their content, and
    tokenised by batched `datasets.map` on `num_proc` processes (default: `num_workers`, at least
    1) into `data_dir`/mlm_cache/tokens, keyed by the texts, the tokenizer and the blocking
    settings. Validation and test are masked once with `seed`, so their loss compares across
    epochs and runs; training batches are masked at random each time (dynamic masking).

    `test_path` (`test_file` is its older name) is the test file of any source. With a
    checkpoint's tokenizer loaded, `setup("test")` reads that file alone and `setup("predict")`
    the texts with mask tokens that `predict_path` names (see predict_inputs.read_texts), one
    example each, cut at `max_length` tokens as in training: neither needs the training data.

    `streaming`: the training text is read as a stream and tokenised on the fly (mlm_stream.py), for
    `trainer.max_steps`; validation and test are `val_file`/`test_path`, the hub's `val_split`/
    `test_split`, else the source's first `val_examples` and next `test_examples` texts, which
    training skips.
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
        num_proc: int | None = None,
        streaming: bool = False,
        shuffle_buffer: int = 10_000,
        val_examples: int = 1000,
        test_examples: int = 1000,
        **common: Any,
    ) -> None:
        super().__init__(vocab_size=vocab_size, lowercase=lowercase, max_length=max_length, **common)
        if not 0 < mlm_probability < 1:
            raise UserError(f"data.mlm_probability={mlm_probability}: give the fraction of tokens to mask, in (0, 1)")
        if num_proc is not None and num_proc < 1:
            raise UserError(f"data.num_proc={num_proc}: give the number of tokenising processes (1 or more), or null")
        self._stream_loader: StreamLoader | None = None
        self._stream_position: dict[str, Any] | None = None
        if streaming and (shuffle_buffer < 1 or val_examples < 1 or test_examples < 1):
            raise UserError(
                f"data.shuffle_buffer={shuffle_buffer}, data.val_examples={val_examples}, "
                f"data.test_examples={test_examples}: with data.streaming=true give at least 1 each"
            )

    @property
    def num_proc(self) -> int:
        hp = self.hparams
        return hp.num_proc or max(1, hp.num_workers)

    @property
    def texts(self) -> dict[str, Any]:
        """Each split's texts: a memory-mapped table with a `text` column."""
        return self.examples

    def _read_file(self, path: str, key: str) -> Any:
        return corpus.read_corpus(path, key, self.hparams.text_column, Path(self.hparams.data_dir) / self.cache)

    def _load(self) -> dict[str, Any]:
        if not self.hparams.streaming:
            return super()._load()
        cache_dir = str(Path(self.hparams.data_dir) / self.cache)
        return load_streams(self.hparams, cache_dir, self._read_file, self.test_path, self.hub_example)

    def _load_generated(self) -> dict[str, Any]:
        return {"train": corpus.from_texts(mlm_sources.generate_corpus(self.hparams.num_examples, self.hparams.seed))}

    def _load_files(self) -> dict[str, Any]:
        hp = self.hparams
        if not hp.train_file:
            raise UserError("data.train_file is not set: give a .txt (one text a line), csv, jsonl or parquet file")
        files = {"train": (hp.train_file, "data.train_file"), "validation": (hp.val_file, "data.val_file")}
        files["test"] = (self.test_path, "data.test_path")
        return {role: self._read_file(path, key) for role, (path, key) in files.items() if path}

    def _load_hub(self, splits: dict[str, str | None]) -> dict[str, Any]:
        hp = self.hparams
        return corpus.read_hub(hp.name, hp.config_name, hp.data_dir, splits, hp.text_column)

    def _test_file(self) -> Any:
        return self._read_file(self.test_path, "data.test_path")

    def _prepare(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The splits' texts, none empty, validation and test cut from training (seeded) where missing."""
        hp = self.hparams
        if hp.streaming:
            return self._prepare_streams(raw)
        for role, texts in raw.items():
            if len(texts) == 0:
                raise UserError(f"the {role} split holds no text (data.source={hp.source}): give a non-empty one")
        if "train" not in raw:
            return raw
        return carve_missing_splits(raw, hp.val_fraction, hp.test_fraction, hp.seed, take=corpus.select_rows)

    def _prepare_streams(self, raw: dict[str, Any]) -> dict[str, Any]:
        for role, texts in raw.items():
            if role != "train" and len(texts) == 0:
                source = self.hparams.source
                raise UserError(f"the {role} split holds no text (data.source={source}): give a non-empty one")
        return raw

    def _training_texts(self) -> Any:
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
        if role == "train" and self.hparams.streaming:
            return self._training_stream()
        tokens, cache_file = self._tokenize(role)
        if role == "train":
            return tokens
        masked = self._mask_once(
            tokens, role, cache_file.with_name(f"{cache_file.stem}-masked-{self.hparams.seed}.arrow")
        )
        if role == "test" and self.test_path:
            log.info("test split: %d texts from %s", len(self.texts["test"]), self.test_path)
        return masked

    def _tokenize(self, role: str) -> tuple[Any, Path]:
        hp = self.hparams
        tokenizer, texts, offsets = self.tokenizer, self.texts[role], hp.whole_word_mask
        # one process per MAP_BATCH rows at most: starting a process costs more than a few batches
        num_proc = max(1, min(self.num_proc, len(texts) // MAP_BATCH))
        # blocks are cut in each MAP_BATCH rows of a process' share: where they end depends on num_proc
        blocking = "lines" if hp.line_by_line else f"blocks/{num_proc}"
        key = fingerprint(column_fingerprint(texts), tokenizer_fingerprint(tokenizer), hp.max_length, blocking, offsets)
        cache_file = Path(hp.data_dir) / self.cache / "tokens" / f"{role}-{key}.arrow"
        dataset, cached = cached_map(
            texts,
            lambda batch: encode(tokenizer, batch["text"], hp.max_length, hp.line_by_line, offsets),
            cache_file,
            num_proc=num_proc,
            batch_size=MAP_BATCH,
            remove_columns=texts.column_names,
            features=token_features(offsets),
            desc=f"tokenising {role}",
        )
        what = "lines" if hp.line_by_line else "blocks"
        done = "cached in" if cached else f"tokenised ({num_proc} process{'es' * (num_proc > 1)}) into"
        log.info("%s split: %d texts, %d %s, tokens %s %s", role, len(texts), len(dataset), what, done, cache_file)
        return dataset, cache_file

    def _training_stream(self) -> MaskedLMStream:
        hp = self.hparams
        tokenize = partial(
            encode, self.tokenizer, max_length=hp.max_length, line_by_line=hp.line_by_line, offsets=hp.whole_word_mask
        )
        texts = self.texts["train"]
        origin = hp.train_file or hp.name or hp.source
        log.info("train split: streamed from %s, tokenised on the fly (%d held-out texts skipped)", origin, texts.skip)
        return MaskedLMStream(texts, tokenize, hp.line_by_line, MAP_BATCH)

    def _masker(self, seed: int | None) -> PadOffsets:
        hp = self.hparams
        return masker(self.tokenizer, hp.mlm_probability, hp.whole_word_mask, seed)

    def train_dataloader(self) -> Any:
        if not self.hparams.streaming:
            return super().train_dataloader()
        hp, stream = self.hparams, self.splits["train"]
        trainer = self.trainer
        if trainer is not None and trainer.max_steps in (-1, None):
            raise UserError(
                "data.streaming=true: a stream has no length, so trainer.max_steps ends training "
                "(it is -1): give trainer.max_steps=<steps>, and trainer.val_check_interval=<steps> to validate"
            )
        stream.rank, stream.world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        masks = partial(masker, self.tokenizer, hp.mlm_probability, hp.whole_word_mask)
        collate = StreamCollate(masks, hp.seed, stream.rank)
        # a new pool of workers for each iterator: a persistent one would keep the shards' old start
        options = {**self._options(), "persistent_workers": False}
        loader = StreamLoader(stream, batch_size=self.batch_size, collate_fn=collate, **options)
        # a checkpoint's position goes to the first loader only: a rebuilt one goes on from the last
        position, self._stream_position = self._stream_position, None
        if position:
            loader.load_state_dict(position)
        elif self._stream_loader is not None:
            loader.load_state_dict(self._stream_loader.state_dict())
        self._stream_loader = loader
        return loader

    def state_dict(self) -> dict[str, Any]:
        """With streaming, also the training stream's position (`StreamLoader.state_dict`): Lightning
        restores a data module before it builds the loader, which fetches its first batch at once."""
        state = super().state_dict()
        if self._stream_loader is not None:
            state["stream_position"] = self._stream_loader.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._stream_position = state.get("stream_position")

    def model_kwargs(self) -> dict[str, Any]:
        return {"tokenizer_files": self.tokenizer_files}

    def _mask_once(self, dataset: Any, role: str, cache_file: Path) -> Any:
        """The split masked once, MAP_BATCH rows at a time by a collator seeded with `seed` and the
        first row's index, cached beside the tokens: the same masks in every validation pass and
        every run, independent of data.batch_size and data.num_proc."""
        seed = self.hparams.seed

        def mask(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
            masked = self._masker(seed + indices[0])(rows)
            lengths = [len(ids) for ids in batch["input_ids"]]
            return {
                "input_ids": [ids[:n].tolist() for ids, n in zip(masked["input_ids"], lengths, strict=True)],
                "labels": [labels[:n].tolist() for labels, n in zip(masked["labels"], lengths, strict=True)],
                "attention_mask": [[1] * n for n in lengths],
            }

        masked, _ = cached_map(
            dataset,
            mask,
            cache_file,
            batch_size=MAP_BATCH,
            with_indices=True,
            remove_columns=dataset.column_names,
            desc=f"masking {role}",
        )
        return masked

    def _train_collator(self) -> PadOffsets:
        # training masks with the global torch generator, which Lightning seeds (workers too)
        return self._masker(None)

    def _collator(self) -> DataCollatorForTokenClassification:
        """Validation and test come masked: padding ids and labels (-100) is all that is left."""
        return DataCollatorForTokenClassification(self.tokenizer)

    def _predict_collator(self) -> KeepFields:
        return KeepFields(DataCollatorWithPadding(self.tokenizer), ("id", "text"))
