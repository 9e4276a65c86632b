"""Tagged sentences (NER and other token tagging) tokenised for a Hugging Face encoder."""

import logging
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorForTokenClassification

from litforge.data.loaders import EpochShuffle, own_generator, resumable_loader
from litforge.data.splits import carve_missing_splits, check_fractions
from litforge.data.text import predict_inputs as text_predict
from litforge.data.text import token_classification_sources as token_sources
from litforge.data.text.conll import SCHEMES, Sentence, read_tagged_file, to_iob2
from litforge.data.text.sources import check_training_file
from litforge.data.text.token_align import align_labels, subtoken_counts, word_windows
from litforge.data.text.tokenizer import run_tokenizer, tokenizer_files, tokenizer_from_files
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("generated", "hub", "files")
OVERFLOW = ("window", "truncate")
SPLITS = ("train", "validation", "test")
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}
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


class TokenDataModule(L.LightningDataModule):
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
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        for key, value, valid in (("source", source, SOURCES), ("overflow", overflow, OVERFLOW)):
            if value not in valid:
                raise UserError(f"data.{key}={value!r} is not one of {valid}")
        check_fractions(val_fraction, test_fraction)
        if tag_scheme not in SCHEMES:
            raise UserError(f"data.tag_scheme={tag_scheme!r} is not one of {SCHEMES}")
        if batch_size < 1 or max_length < 4:
            raise UserError(f"data.batch_size={batch_size}, data.max_length={max_length}: give at least 1 and 4")
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.id2label: list[str] | None = list(labels) if labels else None
        self.tokenizer: Any = None
        self.tokenizer_files: dict[str, str] | None = None
        self.sentences: dict[str, list[Sentence]] = {}
        self.splits: dict[str, list[dict[str, Any]]] = {}

    @property
    def test_path(self) -> str | None:
        return self.hparams.test_path or self.hparams.test_file

    def _restored(self) -> bool:
        """Whether a checkpoint's state is loaded, so new data can be read without the training data."""
        return self.tokenizer is not None and self.id2label is not None

    def _test_file(self) -> list[Sentence]:
        hp = self.hparams
        return read_tagged_file(self.test_path, hp.token_column, hp.tag_column)

    def _load(self) -> dict[str, list[Sentence]]:
        hp = self.hparams
        if hp.source == "generated":
            raw = token_sources.load_generated(hp.num_sentences, hp.seed)
        elif hp.source == "files":
            files = {"train": hp.train_file, "validation": hp.val_file, "test": self.test_path}
            return token_sources.load_files(files, hp.token_column, hp.tag_column)
        elif not hp.name:
            raise UserError("data.source=hub needs data.name, a hub id such as lhoestq/conll2003")
        else:
            test_split = None if self.test_path else hp.test_split
            splits = {"train": hp.train_split, "validation": hp.val_split, "test": test_split}
            raw = token_sources.load_hub(hp.name, hp.config_name, hp.data_dir, splits, hp.token_column, hp.tag_column)
        if self.test_path:
            raw["test"] = self._test_file()
        return raw

    def prepare_data(self) -> None:
        # a checkpoint predicting or scoring a file of its own needs no download
        own_files = self._restored() and (self.hparams.predict_path or self.test_path)
        if self.hparams.source == "hub" and not own_files:
            self._load()

    def _read(self, roles: tuple[str, ...]) -> dict[str, list[Sentence]]:
        """The splits in IOB2 with tags from the label list, all checked before anything is written:
        a restored module with a test file reads only that for testing, else every split is read
        (and val/test cut from training where missing)."""
        hp = self.hparams
        if roles == ("test",) and self._restored() and self.test_path:
            loaded = {"test": self._test_file()}
        else:
            if roles == ("test",) and self._restored():
                check_training_file(hp.source, hp.train_file, "CoNLL or jsonl file")
            loaded = self._load()
        raw = {
            role: [Sentence(s.words, to_iob2(s.tags, hp.tag_scheme, s.where), s.where) for s in sentences]
            for role, sentences in loaded.items()
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
        return raw if "train" not in raw else self._carve(raw)

    def _carve(self, raw: dict[str, list[Sentence]]) -> dict[str, list[Sentence]]:
        hp = self.hparams
        return carve_missing_splits(raw, hp.val_fraction, hp.test_fraction, hp.seed)

    def _set_tokenizer(self, tokenizer: Any, files: dict[str, str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.tokenizer_files = files or tokenizer_files(tokenizer)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        roles = STAGE_SPLITS.get(stage or "", SPLITS)
        if any(role not in self.sentences for role in roles):
            self.sentences = self._read(roles)
        if self.tokenizer is None:
            train = self.sentences["train"]
            self._set_tokenizer(run_tokenizer(self.hparams, lambda: [" ".join(s.words) for s in train], "text_cache"))
        for role in self.sentences:
            if role not in self.splits:
                self.splits[role] = self.encode(self.sentences[role], role)
                if role == "test" and self.test_path:
                    log.info("test split: %d sentences from %s", len(self.sentences["test"]), self.test_path)

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

    def encode(self, sentences: list[Sentence], role: str = "data") -> list[dict[str, Any]]:
        """input ids, sub-token labels, first-sub-token flags and the window's place in its sentence,
        one example per window. A training window that starts inside an entity starts it with B-, so
        its tags stay valid IOB2; evaluation keeps the file's tags, to score whole sentences."""
        hp = self.hparams
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
        return examples

    def _setup_predict(self) -> None:
        """The inputs `predict_path` names, each with its windows (see `PredictBatches`)."""
        if "predict" in self.splits:
            return
        text_predict.require_trained_tokenizer(self.tokenizer, " and tag list")
        inputs = token_sources.read_inputs(self.hparams.predict_path, self.hparams.token_column)
        windows, encoded = self._windows([x.words for x in inputs], "predict")
        items = [{"id": x.id, "words": x.words, "text": x.text, "spans": x.spans, "windows": []} for x in inputs]
        for row, (i, a, b) in enumerate(windows):
            _, starts = align_labels(encoded.word_ids(row), [0] * (b - a), False, [0])
            items[i]["windows"].append({**self._inputs(encoded, row), "word_start": starts, "first_word": a})
        log.info("predict: %d inputs from %s", len(items), self.hparams.predict_path)
        self.splits["predict"] = items

    def _options(self) -> dict[str, Any]:
        return {
            "collate_fn": PadWordStarts(self.tokenizer),
            "num_workers": self.hparams.num_workers,
            "persistent_workers": self.hparams.num_workers > 0,
            "generator": own_generator(self.hparams.seed),
        }

    def _loader(self, role: str) -> DataLoader:
        return DataLoader(self.splits[role], batch_size=self.batch_size, **self._options())

    def train_dataloader(self) -> DataLoader:
        sampler = EpochShuffle(len(self.splits["train"]), self.hparams.seed)
        return resumable_loader(self.splits["train"], self.batch_size, sampler, self.trainer, **self._options())

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        options = {**self._options(), "collate_fn": PredictBatches(self.tokenizer)}
        return DataLoader(self.splits["predict"], batch_size=self.batch_size, **options)

    def model_kwargs(self) -> dict[str, Any]:
        return {"id2label": list(self.id2label), "tokenizer_files": self.tokenizer_files}

    def state_dict(self) -> dict[str, Any]:
        """The tag list and the tokenizer's files: what eval and predict need besides the weights."""
        return {"id2label": self.id2label, "tokenizer_files": self.tokenizer_files}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.id2label = state["id2label"]
        self._set_tokenizer(tokenizer_from_files(state["tokenizer_files"]), state["tokenizer_files"])
