"""Fast tokenizers for the text tasks: a pretrained one by hub id or folder, or a WordPiece
tokenizer trained on the training text; a tokenizer as the text of its files, which checkpoints
carry; and tokenisation cached on disk by fingerprint."""

import hashlib
import json
import logging
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import datasets
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def fingerprint(*parts: object) -> str:
    """A short, stable hash of the parts' text (cache keys)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()[:20]


def _add_texts(digest: Any, values: Iterable[str | None]) -> None:
    for value in values:
        digest.update(b"\x00" if value is None else str(value).encode())
        digest.update(b"\x1f")


def texts_fingerprint(*columns: Sequence[str | None]) -> str:
    digest = hashlib.sha256()
    for column in columns:
        _add_texts(digest, column)
    return digest.hexdigest()[:20]


# column_fingerprint's keys per data set object: the tokenizer's and the tokens' cache keys both
# need the training texts' key, a pass over the whole column
_COLUMN_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def column_fingerprint(dataset: datasets.Dataset, column: str = "text") -> str:
    """`texts_fingerprint` of a memory-mapped column, read in batches: the same key as its texts in a list;
    computed once per data set object and column."""
    known = _COLUMN_KEYS.setdefault(dataset, {})
    if column not in known:
        digest = hashlib.sha256()
        for batch in dataset.select_columns([column]).iter(batch_size=10_000):
            _add_texts(digest, batch[column])
        known[column] = digest.hexdigest()[:20]
    return known[column]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """The tokenizer's vocabulary and rules, without the truncation/padding state a call leaves behind."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return fingerprint(json.dumps(state, sort_keys=True), tokenizer.model_input_names)


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, lowercase: bool, model_max_length: int
) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer ([CLS] a [SEP] b [SEP]) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()))
    tokenizer.train_from_iterator(texts, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **SPECIAL_TOKENS,
    )


def load_tokenizer(name_or_dir: str, key: str) -> PreTrainedTokenizerFast:
    """A fast tokenizer from a hub id or folder; `key` is the config key the name came from."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
    except (OSError, ValueError) as err:
        raise UserError(
            f"{key}={name_or_dir}: no tokenizer could be loaded ({str(err).splitlines()[0][:160]}). "
            "Give a hub id such as bert-base-uncased (needs internet once) or a folder written by "
            "save_pretrained; null trains a WordPiece tokenizer on the training text."
        ) from err
    if not tokenizer.is_fast:
        raise UserError(f"{key}={name_or_dir}: only fast (Rust) tokenizers are supported, this one is not.")
    return tokenizer


@runtime_checkable
class TextBatches(Protocol):
    """Texts too many to hold or to hash (a stream): a cache key for them, and one pass over them in lists."""

    def key(self) -> str: ...

    def batches(self) -> Iterator[list[str]]: ...


class ColumnTexts:
    """The texts of some columns of a data set (a text and its pair) as TextBatches: a tokenizer's
    training text, read in batches."""

    def __init__(self, dataset: datasets.Dataset, columns: Sequence[str]) -> None:
        self.dataset, self.columns = dataset, list(columns)

    def __len__(self) -> int:
        return len(self.dataset) * len(self.columns)

    def key(self) -> str:
        return fingerprint(*(column_fingerprint(self.dataset, column) for column in self.columns))

    def batches(self) -> Iterator[list[str]]:
        for column in self.columns:
            for batch in self.dataset.select_columns([column]).iter(batch_size=10_000):
                yield batch[column]


def trained_tokenizer(
    texts: Sequence[str] | datasets.Dataset | TextBatches,
    vocab_size: int,
    lowercase: bool,
    model_max_length: int,
    cache_dir: Path,
) -> PreTrainedTokenizerFast:
    """`train_wordpiece` on `texts` (a list, a corpus' `text` column read as an iterator of
    batches, or a stream read once), kept under `cache_dir` so the same text and settings train once."""
    arrow, streamed = isinstance(texts, datasets.Dataset), isinstance(texts, TextBatches)
    key = column_fingerprint(texts) if arrow else texts.key() if streamed else texts_fingerprint(texts)
    target = cache_dir / "tokenizers" / fingerprint(key, vocab_size, lowercase, model_max_length)
    if target.is_dir():
        log.info("WordPiece tokenizer from cache %s", target)
        return load_tokenizer(str(target), "cached tokenizer")
    from litforge.data.text.corpus import text_batches

    batches = text_batches(texts) if arrow else texts.batches() if streamed else texts
    tokenizer = train_wordpiece(batches, vocab_size, lowercase, model_max_length)
    if not save_tokenizer(tokenizer, target, replace_other=False):
        # another run trained on the same texts meanwhile (parallel sweep jobs): its tokenizer is the
        # cache's, since trainings of equal inputs may still break ties between tokens differently
        log.info("WordPiece tokenizer from cache %s (written by another run meanwhile)", target)
        return load_tokenizer(str(target), "cached tokenizer")
    what = f"{len(texts)} training texts" if hasattr(texts, "__len__") else "the training stream"
    log.info("trained a WordPiece tokenizer (%d tokens) on %s", len(tokenizer), what)
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, target: Path, replace_other: bool = True) -> bool:
    """save_pretrained into a temporary folder renamed at the end, so no reader sees half a
    tokenizer; False where `target` was there already. The same tokenizer there (another DDP rank
    wrote it) is kept; another one (another run's) is never overwritten: a UserError, or with
    `replace_other=False` (a cache, whose entry is as good as this one) simply kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not tempfile.mkdtemp: the folder gets the user's usual permissions (umask), not 0700
    tmp = target.parent / f".{target.name}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    tokenizer.save_pretrained(str(tmp))
    try:
        tmp.rename(target)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    if not replace_other:
        return False
    existing = load_tokenizer(str(target), "tokenizer folder")
    if tokenizer_fingerprint(existing) != tokenizer_fingerprint(tokenizer):
        raise UserError(
            f"{target} already holds another tokenizer (another run's), which this run does not overwrite: "
            "give data.tokenizer_dir a new folder (by default it is the run directory's tokenizer/)."
        )
    return False


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The tokenizer as its save_pretrained files' text (tokenizer.json and its config), which a
    checkpoint carries as plain strings: eval and prediction rebuild exactly this tokenizer from
    the checkpoint alone, wherever it was copied to."""
    with tempfile.TemporaryDirectory() as tmp:
        # legacy_format=False: only the fast tokenizer's JSON files, no slow vocab/sentencepiece files
        tokenizer.save_pretrained(tmp, legacy_format=False)
        return {path.name: path.read_text(encoding="utf-8") for path in sorted(Path(tmp).iterdir())}


def tokenizer_from_files(files: dict[str, str]) -> PreTrainedTokenizerFast:
    """The tokenizer `tokenizer_files` stored."""
    if "tokenizer.json" not in files:
        raise UserError(
            f"the checkpoint's tokenizer has no tokenizer.json (files: {sorted(files)}), so it cannot be "
            "rebuilt: train the model again with this version of litforge."
        )
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
        return load_tokenizer(tmp, "the checkpoint's tokenizer")


def tokenize(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    text_columns: Sequence[str],
    cache_file: Path,
    extra: Callable[[dict[str, list]], dict[str, list]] | None = None,
) -> tuple[datasets.Dataset, bool]:
    """Token ids (+ `length`, `truncated`, and the columns `extra` makes of a batch, e.g. label ids)
    in place of the data set's columns, memory-mapped from `cache_file`; returns the dataset and
    whether it came from the cache."""
    if cache_file.is_file():
        return datasets.Dataset.from_file(str(cache_file)), True

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(*(batch[c] for c in text_columns), truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        # the Rust encoding keeps what truncation cut off: the one reliable sign an example was cut
        encoded["truncated"] = [bool(e.overflowing) for e in encoded.encodings]
        return {**encoded, **(extra(batch) if extra else {})}

    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tokenized = dataset.map(
        encode, batched=True, remove_columns=dataset.column_names, cache_file_name=str(cache_file), desc="tokenising"
    )
    return tokenized, False


def cached_map(
    dataset: datasets.Dataset, function: Callable, cache_file: Path, num_proc: int = 1, **options: Any
) -> tuple[datasets.Dataset, bool]:
    """`dataset.map(function, batched=True)` written to `cache_file` (with `num_proc` > 1, one file
    per process beside it) and memory-mapped from there; returns it and whether it was cached."""
    shards = f"{cache_file.stem}_*_of_{num_proc:05d}{cache_file.suffix}"
    # datasets reads a whole-file cache whatever num_proc is, shards only for the same num_proc
    cached = cache_file.is_file() or (num_proc > 1 and len(list(cache_file.parent.glob(shards))) == num_proc)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    mapped = dataset.map(
        function, batched=True, cache_file_name=str(cache_file), num_proc=num_proc if num_proc > 1 else None, **options
    )
    return mapped, cached


def run_tokenizer(
    hp: Any, train_texts: Callable[[], Sequence[str] | datasets.Dataset | TextBatches], cache: str
) -> PreTrainedTokenizerFast:
    """The tokenizer of a run: a named one (`data.tokenizer`), else one trained on the training
    texts, saved to `hp.tokenizer_dir` for the user (checkpoints carry their own copy, see
    `tokenizer_files`). `hp`: the data module's hyperparameters (tokenizer, tokenizer_dir,
    vocab_size, lowercase, max_length, data_dir)."""
    name, max_length = hp.tokenizer, hp.max_length
    if name:
        tokenizer = load_tokenizer(name, "data.tokenizer")
        if max_length > tokenizer.model_max_length:
            raise UserError(
                f"data.max_length={max_length} is longer than {name}'s model_max_length "
                f"{tokenizer.model_max_length}: give data.max_length={tokenizer.model_max_length} or less."
            )
    else:
        tokenizer = trained_tokenizer(train_texts(), hp.vocab_size, hp.lowercase, max_length, Path(hp.data_dir) / cache)
    save_tokenizer(tokenizer, Path(hp.tokenizer_dir).expanduser().resolve())
    return tokenizer
