"""Tagged sentences (NER and other token tagging) tokenised for a Hugging Face encoder."""

import logging
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
import torch
from transformers import DataCollatorForTokenClassification

from litforge.data.splits import carve_missing_splits
from litforge.data.text import tagged_arrow as tagged
from litforge.data.text import token_classification_sources as token_sources
from litforge.data.text.base import HFTextDataModule
from litforge.data.text.conll import SCHEMES
from litforge.data.text.corpus import select_rows
from litforge.data.text.token_align import align_labels, subtoken_counts, word_windows
from litforge.data.text.tokenizer import cached_map, fingerprint, tokenizer_fingerprint
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

OVERFLOW = ("window", "truncate")
# per-example integers the collator batches as tensors: where a window sits in its sentence
POSITIONS = ("sentence", "first_word")


class PadWordStarts:
    """DataCollatorForTokenClassification (pads labels with -100) that also pads the
    first-sub-token flags, which metrics use to score each word once, and batches each window's
    sentence and first word (POSITIONS), which put windows back together."""

    def __init__(self, tokenizer: Any) -> None:
        self.collate = DataCollatorForTokenClassification(tokenizer)
        self.left = tokenizer.padding_side == "left"

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        starts = [f["word_start"] for f in features]
        skip = {"word_start", *POSITIONS}
        batch = self.collate([{k: v for k, v in f.items() if k not in skip} for f in features])
        width = batch["input_ids"].shape[1]
        padded = [[0] * (width - len(s)) + s if self.left else s + [0] * (width - len(s)) for s in starts]
        batch["word_start"] = torch.tensor(padded)
        for key in POSITIONS:
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features])
        return batch


class PredictBatches:
    """Batches of whole inputs for prediction: every window of each input (padded by PadWordStarts),
    `input` naming the input of each window, and per input its `id`, `words`, `text` and `spans`."""

    def __init__(self, tokenizer: Any) -> None:
        self.pad = PadWordStarts(tokenizer)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        windows = [(n, window) for n, item in enumerate(items) for window in item["windows"]]
        batch = self.pad([window for _, window in windows])
        batch["input"] = torch.tensor([n for n, _ in windows])
        for key in ("id", "words", "text", "spans"):
            batch[key] = [item[key] for item in items]
        return batch


class TokenDataModule(HFTextDataModule):
    """Sentences with one tag per word from the generated corpus, a hub data set or CoNLL/jsonl
    files; tags converted to IOB2; label list and tokenizer handed to the model. Sentences are
    memory-mapped Arrow tables, never Python lists of a whole file: files are read in batches into
    `data_dir`/text_cache/tagged, keyed by their content, and tokenised by a batched map into
    `data_dir`/text_cache/tokens (see tagged_arrow.py).

    `token_column`/`tag_column`: column names for hub data sets, column indices for CoNLL files.
    `overflow`: "window" splits sentences longer than `max_length` sub-tokens into several
    examples (scored and predicted as the whole sentence again); "truncate" cuts them and reports
    how many were cut.

    `test_path` (`test_file` is its older name) is the test file of any source. With a
    checkpoint's state loaded (tag list, tokenizer), `setup("test")` reads that file alone and
    `setup("predict")` the inputs `predict_path` names (see token_sources.read_inputs), tagged on
    their own words in the windows training used: neither needs the training data.
    """

    hub_example = "lhoestq/conll2003"
    file_kind = "CoNLL or jsonl file"
    label_kind = "tag list"

    def __init__(
        self,
        token_column: Any = 0,
        tag_column: Any = -1,
        tag_scheme: str = "iob2",
        labels: list[str] | None = None,
        label_all_subtokens: bool = False,
        overflow: str = "window",
        num_sentences: int = 3000,
        vocab_size: int = 2000,
        lowercase: bool = False,
        max_length: int = 64,
        **common: Any,
    ) -> None:
        super().__init__(vocab_size=vocab_size, lowercase=lowercase, max_length=max_length, **common)
        for key, value, valid in (("overflow", overflow, OVERFLOW), ("tag_scheme", tag_scheme, SCHEMES)):
            if value not in valid:
                raise UserError(f"data.{key}={value!r} is not one of {valid}")
        self.id2label = list(labels) if labels else None

    @property
    def sentences(self) -> dict[str, datasets.Dataset]:
        """Each split's sentences (columns words, tags in IOB2, line), memory-mapped where read from disk."""
        return self.examples

    @property
    def cache_dir(self) -> Path:
        return Path(self.hparams.data_dir) / self.cache

    def _load_generated(self) -> dict[str, tagged.TaggedSplit]:
        return token_sources.load_generated(self.hparams.num_sentences, self.hparams.seed)

    def _load_files(self) -> dict[str, tagged.TaggedSplit]:
        hp = self.hparams
        files = {"train": hp.train_file, "validation": hp.val_file, "test": self.test_path}
        return token_sources.load_files(files, hp.token_column, hp.tag_column, self.cache_dir)

    def _load_hub(self, splits: dict[str, str | None]) -> dict[str, tagged.TaggedSplit]:
        hp = self.hparams
        return token_sources.load_hub(hp.name, hp.config_name, hp.data_dir, splits, hp.token_column, hp.tag_column)

    def _test_file(self) -> tagged.TaggedSplit:
        return tagged.read_tagged(self.test_path, self.hparams.token_column, self.hparams.tag_column, self.cache_dir)

    def _prepare(self, raw: dict[str, tagged.TaggedSplit]) -> dict[str, datasets.Dataset]:
        """The splits in IOB2 with tags from the label list (val/test cut from training where missing),
        converted and checked a batch at a time."""
        hp = self.hparams
        iob2 = {role: tagged.iob2_sentences(split, hp.tag_scheme, self.cache_dir) for role, split in raw.items()}
        for role, sentences in iob2.items():
            if len(sentences) == 0:
                raise UserError(
                    f"the {role} split ({raw[role].prefix.strip()}) holds no tagged sentence: give a non-empty one"
                )
        derived = self.id2label is None
        self.id2label = self.id2label or tagged.label_list(iob2["train"])
        for role, sentences in iob2.items():
            # a label list made from the training tags holds every one of them
            if not (derived and role == "train"):
                tagged.check_tags(raw[role], sentences, self.id2label)
        if "train" not in iob2:
            return iob2
        return carve_missing_splits(iob2, hp.val_fraction, hp.test_fraction, hp.seed, take=select_rows)

    def _training_texts(self) -> tagged.SentenceTexts:
        return tagged.SentenceTexts(self.sentences["train"])

    def _windows(self, words: list[list[str]]) -> tuple[list[tuple[int, int, int]], Any, list[bool]]:
        """(sentence, first word, end word) of each example, their encoding and whether truncation cut
        each: with overflow=window runs of words that fit `max_length` sub-tokens, else whole sentences."""
        hp = self.hparams
        if hp.overflow == "window":
            budget = hp.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
            counts = subtoken_counts(self.tokenizer, words)
            windows = [(i, a, b) for i, count in enumerate(counts) for a, b in word_windows(count, budget)]
        else:
            windows = [(i, 0, len(w)) for i, w in enumerate(words)]
        encoded = self.tokenizer(
            [words[i][a:b] for i, a, b in windows], is_split_into_words=True, truncation=True, max_length=hp.max_length
        )
        cut = [
            max((w for w in encoded.word_ids(row) if w is not None), default=-1) < b - a - 1
            for row, (_, a, b) in enumerate(windows)
        ]
        return windows, encoded, cut

    def _log_overflow(self, role: str, sentences: int, windows: int, cut: int) -> None:
        hp = self.hparams
        if windows > sentences:
            log.info(
                "%s: %d sentences became %d windows of at most data.max_length=%d sub-tokens",
                role,
                sentences,
                windows,
                hp.max_length,
            )
        if cut:
            log.warning(
                "%s: %d of %d sentences are longer than data.max_length=%d sub-tokens and were truncated "
                "(data.overflow=window keeps them whole as several windows)",
                role,
                cut,
                sentences,
                hp.max_length,
            )

    def _inputs(self, encoded: Any, row: int) -> dict[str, list[int]]:
        return {k: encoded[k][row] for k in self.tokenizer.model_input_names if k in encoded}

    def _token_features(self) -> datasets.Features:
        """The cached columns' types: 32-bit ids and labels, 8-bit flags (datasets would infer 64 bits)."""
        ints = datasets.Sequence(datasets.Value("int32"))
        probe = self.tokenizer([["a"]], is_split_into_words=True)
        inputs = {k: ints for k in self.tokenizer.model_input_names if k in probe}
        return datasets.Features(
            {
                **inputs,
                "labels": ints,
                "word_start": datasets.Sequence(datasets.Value("int8")),
                "sentence": datasets.Value("int64"),
                "first_word": datasets.Value("int32"),
                "cut": datasets.Value("bool"),
            }
        )

    def _encode_batch(self, batch: Any, indices: list[int], train: bool) -> dict[str, list]:
        """One example per window of the batch's sentences, with a `cut` flag per window."""
        index = {tag: i for i, tag in enumerate(self.id2label)}
        inside = [index.get("I-" + tag[2:], i) if tag.startswith("B-") else i for i, tag in enumerate(self.id2label)]
        windows, encoded, cut = self._windows(batch["words"])
        out: dict[str, list] = {}
        for row, (i, a, b) in enumerate(windows):
            tags = list(batch["tags"][i][a:b])
            if train and tags[0].startswith("I-"):
                tags[0] = "B-" + tags[0][2:]
            ids = [index[t] for t in tags]
            labels, starts = align_labels(encoded.word_ids(row), ids, self.hparams.label_all_subtokens, inside)
            example = {**self._inputs(encoded, row), "labels": labels, "word_start": starts}
            for key, value in {**example, "sentence": indices[i], "first_word": a, "cut": cut[row]}.items():
                out.setdefault(key, []).append(value)
        return out

    def _encode(self, role: str) -> datasets.Dataset:
        """input ids, sub-token labels, first-sub-token flags and the window's place in its sentence,
        one example per window, by a batched map cached in `data_dir`/text_cache/tokens. A training
        window that starts inside an entity starts it with B-, so its tags stay valid IOB2; evaluation
        keeps the file's tags, to score whole sentences."""
        hp = self.hparams
        sentences, train = self.sentences[role], role == "train"
        key = fingerprint(
            tagged.content_key(sentences),
            self.id2label,
            tokenizer_fingerprint(self.tokenizer),
            hp.max_length,
            hp.overflow,
            hp.label_all_subtokens,
            train,
        )
        cache_file = self.cache_dir / "tokens" / f"{role}-{key}.arrow"
        examples, cached = cached_map(
            sentences,
            lambda batch, indices: self._encode_batch(batch, indices, train),
            cache_file,
            batch_size=tagged.BATCH,
            with_indices=True,
            remove_columns=sentences.column_names,
            features=self._token_features(),
            new_fingerprint=key,
            desc=f"tokenising {role}",
        )
        cut = pc.sum(examples.data.column("cut").cast("int64")).as_py() or 0
        self._log_overflow(role, len(sentences), len(examples), cut)
        done = "cached in" if cached else "tokenised into"
        log.info("%s split: %d sentences, %d examples, %s %s", role, len(sentences), len(examples), done, cache_file)
        if role == "test" and self.test_path:
            log.info("test split: %d sentences from %s", len(sentences), self.test_path)
        return examples.remove_columns(["cut"])

    def _input_items(self, inputs: list[token_sources.TokenInput]) -> list[dict[str, Any]]:
        """Each input with its windows (see `PredictBatches`)."""
        windows, encoded, cut = self._windows([x.words for x in inputs])
        self._log_overflow("predict", len(inputs), len(windows), sum(cut))
        items = [{"id": x.id, "words": x.words, "text": x.text, "spans": x.spans, "windows": []} for x in inputs]
        for row, (i, a, b) in enumerate(windows):
            _, starts = align_labels(encoded.word_ids(row), [0] * (b - a), False, [0])
            items[i]["windows"].append({**self._inputs(encoded, row), "word_start": starts, "first_word": a})
        return items

    def _predict_examples(self) -> list[dict[str, Any]]:
        """The inputs `predict_path` names."""
        items = self._input_items(token_sources.read_inputs(self.hparams.predict_path, self.hparams.token_column))
        log.info("predict: %d inputs from %s", len(items), self.hparams.predict_path)
        return items

    def _item_examples(self, items: list[Any], ids: list[str]) -> list[dict[str, Any]]:
        """Raw texts (split into words as a .txt file's lines are) or lists of tokens (tagged as given)."""
        return self._input_items(
            [token_sources.request_input(id_, item, i) for i, (id_, item) in enumerate(zip(ids, items, strict=True))]
        )

    def predict_schema(self) -> dict[str, Any]:
        return {**super().predict_schema(), "input": "a text (split into words) or a list of words"}

    def _collator(self) -> PadWordStarts:
        return PadWordStarts(self.tokenizer)

    def _predict_collator(self) -> PredictBatches:
        return PredictBatches(self.tokenizer)
