"""Tagged sentences (NER and other token tagging) tokenised for a Hugging Face encoder."""

import logging
from typing import Any

import torch
from transformers import DataCollatorForTokenClassification

from litforge.data.splits import carve_missing_splits
from litforge.data.text import token_classification_sources as token_sources
from litforge.data.text.base import HFTextDataModule
from litforge.data.text.conll import SCHEMES, Sentence, read_tagged_file, to_iob2
from litforge.data.text.token_align import align_labels, subtoken_counts, word_windows
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

OVERFLOW = ("window", "truncate")
# per-example integers the collator batches as tensors: where a window sits in its sentence
POSITIONS = ("sentence", "first_word")


def label_list(sentences: list[Sentence]) -> list[str]:
    """O first, then each entity type's B- and I- tags, types sorted: the same list for the same data."""
    kinds = sorted({tag[2:] for s in sentences for tag in s.tags if tag != "O"})
    return ["O", *(f"{p}-{kind}" for kind in kinds for p in "BI")]


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
    files; tags converted to IOB2; label list and tokenizer handed to the model.

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
    def sentences(self) -> dict[str, list[Sentence]]:
        """Each split's sentences, tags in IOB2."""
        return self.examples

    def _load_generated(self) -> dict[str, list[Sentence]]:
        return token_sources.load_generated(self.hparams.num_sentences, self.hparams.seed)

    def _load_files(self) -> dict[str, list[Sentence]]:
        hp = self.hparams
        files = {"train": hp.train_file, "validation": hp.val_file, "test": self.test_path}
        return token_sources.load_files(files, hp.token_column, hp.tag_column)

    def _load_hub(self, splits: dict[str, str | None]) -> dict[str, list[Sentence]]:
        hp = self.hparams
        return token_sources.load_hub(hp.name, hp.config_name, hp.data_dir, splits, hp.token_column, hp.tag_column)

    def _test_file(self) -> list[Sentence]:
        return read_tagged_file(self.test_path, self.hparams.token_column, self.hparams.tag_column)

    def _prepare(self, raw: dict[str, list[Sentence]]) -> dict[str, list[Sentence]]:
        """The splits in IOB2 with tags from the label list (val/test cut from training where missing)."""
        hp = self.hparams
        iob2 = {
            role: [Sentence(s.words, to_iob2(s.tags, hp.tag_scheme, s.where), s.where) for s in sentences]
            for role, sentences in raw.items()
        }
        self.id2label = self.id2label or label_list(iob2["train"])
        known = set(self.id2label)
        for sentences in iob2.values():
            for sentence in sentences:
                unknown = [t for t in sentence.tags if t not in known]
                if unknown:
                    raise UserError(
                        f"{sentence.where}: tag {unknown[0]!r} (as IOB2) is not in the label list {self.id2label} "
                        "(data.labels, or the tags of the training data). Fix the tag or add it to data.labels."
                    )
        if "train" not in iob2:
            return iob2
        return carve_missing_splits(iob2, hp.val_fraction, hp.test_fraction, hp.seed)

    def _training_texts(self) -> list[str]:
        return [" ".join(s.words) for s in self.sentences["train"]]

    def _windows(self, words: list[list[str]], role: str) -> tuple[list[tuple[int, int, int]], Any]:
        """(sentence, first word, end word) of each example and their encoding: with overflow=window
        runs of words that fit `max_length` sub-tokens, else whole sentences (truncated)."""
        hp = self.hparams
        if hp.overflow == "window":
            budget = hp.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
            counts = subtoken_counts(self.tokenizer, words)
            windows = [(i, a, b) for i, count in enumerate(counts) for a, b in word_windows(count, budget)]
            if len(windows) > len(words):
                log.info(
                    "%s: %d sentences became %d windows of at most data.max_length=%d sub-tokens",
                    role,
                    len(words),
                    len(windows),
                    hp.max_length,
                )
        else:
            windows = [(i, 0, len(w)) for i, w in enumerate(words)]
        encoded = self.tokenizer(
            [words[i][a:b] for i, a, b in windows], is_split_into_words=True, truncation=True, max_length=hp.max_length
        )
        cut = sum(
            max((w for w in encoded.word_ids(row) if w is not None), default=-1) < b - a - 1
            for row, (_, a, b) in enumerate(windows)
        )
        if cut:
            log.warning(
                "%s: %d of %d sentences are longer than data.max_length=%d sub-tokens and were truncated "
                "(data.overflow=window keeps them whole as several windows)",
                role,
                cut,
                len(words),
                hp.max_length,
            )
        return windows, encoded

    def _inputs(self, encoded: Any, row: int) -> dict[str, list[int]]:
        return {k: encoded[k][row] for k in self.tokenizer.model_input_names if k in encoded}

    def _encode(self, role: str) -> list[dict[str, Any]]:
        """input ids, sub-token labels, first-sub-token flags and the window's place in its sentence,
        one example per window. A training window that starts inside an entity starts it with B-, so
        its tags stay valid IOB2; evaluation keeps the file's tags, to score whole sentences."""
        hp = self.hparams
        sentences = self.sentences[role]
        index = {tag: i for i, tag in enumerate(self.id2label)}
        inside = [index.get("I-" + tag[2:], i) if tag.startswith("B-") else i for i, tag in enumerate(self.id2label)]
        windows, encoded = self._windows([s.words for s in sentences], role)
        examples = []
        for row, (i, a, b) in enumerate(windows):
            tags = list(sentences[i].tags[a:b])
            if role == "train" and tags[0].startswith("I-"):
                tags[0] = "B-" + tags[0][2:]
            word_ids = encoded.word_ids(row)
            labels, starts = align_labels(word_ids, [index[t] for t in tags], hp.label_all_subtokens, inside)
            position = {"sentence": i, "first_word": a}
            examples.append({**self._inputs(encoded, row), "labels": labels, "word_start": starts, **position})
        if role == "test" and self.test_path:
            log.info("test split: %d sentences from %s", len(sentences), self.test_path)
        return examples

    def _input_items(self, inputs: list[token_sources.TokenInput]) -> list[dict[str, Any]]:
        """Each input with its windows (see `PredictBatches`)."""
        windows, encoded = self._windows([x.words for x in inputs], "predict")
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
