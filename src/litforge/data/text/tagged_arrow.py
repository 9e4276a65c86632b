"""Tagged sentences as memory-mapped Arrow tables of `words`, `tags` and `line` columns: the user's
CoNLL/jsonl files written out in batches and cached by their content, then converted to IOB2,
checked and counted a batch at a time, so a file larger than memory never becomes one Python list."""

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import datasets

from litforge.data.text.conll import Row, tagged_file, tagged_rows, to_iob2
from litforge.data.text.corpus import file_digest, write_arrow
from litforge.data.text.tokenizer import fingerprint
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

# sentences per batch read, written, converted or checked: a few MB of Python strings at a time
BATCH = 1_000
STRINGS = datasets.Sequence(datasets.Value("string"))
FEATURES = datasets.Features({"words": STRINGS, "tags": STRINGS, "line": datasets.Value("int64")})


@dataclass(frozen=True)
class TaggedSplit:
    """One split as loaded: its sentences (`words`, `tags` and, from files, `line`), how a message
    names sentence n (`prefix` n `suffix`: a file line, a hub row, a generated sentence), the names
    of integer tags (a hub's ClassLabel) and a key of its content for the IOB2 cache (None: in memory)."""

    sentences: datasets.Dataset
    prefix: str
    suffix: str = ""
    names: list[str] | None = None
    key: str | None = None

    def where(self, number: int) -> str:
        return f"{self.prefix}{number}{self.suffix}"


def _batches(rows: Iterator[Row]) -> Iterator[dict[str, list]]:
    while batch := list(islice(rows, BATCH)):
        words, tags, lines = zip(*batch, strict=True)
        yield {"words": list(words), "tags": list(tags), "line": list(lines)}


def read_tagged(path: str, token_column: int, tag_column: int, cache_dir: Path) -> TaggedSplit:
    """A jsonl (by its suffix) or CoNLL file's sentences, memory-mapped from `cache_dir`/tagged,
    where the same content read with the same columns is written once."""
    jsonl = Path(path).suffix.lower() == ".jsonl"
    file = tagged_file(path, "jsonl" if jsonl else "CoNLL")
    columns = "jsonl" if jsonl else f"{token_column}-{tag_column}"
    target = cache_dir / "tagged" / f"{file_digest(file)}-{columns}.arrow"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_arrow(file, _batches(tagged_rows(file, token_column, tag_column)), FEATURES, target)
        log.info("%s: sentences cached in %s", file, target)
    return TaggedSplit(datasets.Dataset.from_file(str(target)), f"{file} line ", key=target.stem)


def from_rows(words: list[list[str]], tags: list[list[str]], prefix: str, suffix: str = "") -> TaggedSplit:
    """Sentences already in memory (the generated corpus), numbered from 0."""
    rows = {"words": words, "tags": tags, "line": list(range(len(words)))}
    return TaggedSplit(datasets.Dataset.from_dict(rows, features=FEATURES), prefix, suffix)


def _convert(split: TaggedSplit, scheme: str, batch: Any, indices: list[int]) -> dict[str, list]:
    out: dict[str, list] = {"words": [], "tags": [], "line": []}
    # hub rows have no line: their row index names them
    lines = batch["line"] if "line" in batch else indices
    for words, tags, line in zip(batch["words"], batch["tags"], lines, strict=True):
        if not words:
            continue
        where = split.where(line)
        if len(tags) != len(words):
            raise UserError(f"{where}: {len(words)} words but {len(tags)} tags; give each word one tag.")
        names = [split.names[t] for t in tags] if split.names else [str(t) for t in tags]
        out["words"].append(words)
        out["tags"].append(to_iob2(names, scheme, where))
        out["line"].append(line)
    return out


def iob2_sentences(split: TaggedSplit, scheme: str, cache_dir: Path) -> datasets.Dataset:
    """The split's non-empty sentences with tags (names of integer tags) in IOB2, in batches; cached
    in `cache_dir`/tagged where the split has a content key."""
    dataset = split.sentences
    # a fingerprint of our own: datasets would otherwise hash the function and the split it holds
    key = fingerprint(split.key or dataset._fingerprint, split.names, scheme)
    options: dict[str, Any] = {"remove_columns": dataset.column_names, "features": FEATURES, "new_fingerprint": key}
    if split.key is not None:
        target = cache_dir / "tagged" / f"iob2-{key}.arrow"
        target.parent.mkdir(parents=True, exist_ok=True)
        options["cache_file_name"] = str(target)
    return dataset.map(
        lambda batch, indices: _convert(split, scheme, batch, indices),
        batched=True,
        batch_size=BATCH,
        with_indices=True,
        desc=f"tags to IOB2 ({split.prefix.strip()})",
        **options,
    )


def _tag_batches(sentences: datasets.Dataset) -> Iterator[dict[str, list]]:
    yield from sentences.select_columns(["tags", "line"]).iter(batch_size=BATCH)


def label_list(sentences: datasets.Dataset) -> list[str]:
    """O first, then each entity type's B- and I- tags, types sorted: the same list for the same data."""
    kinds = {tag[2:] for batch in _tag_batches(sentences) for tags in batch["tags"] for tag in tags if tag != "O"}
    return ["O", *(f"{p}-{kind}" for kind in sorted(kinds) for p in "BI")]


def check_tags(split: TaggedSplit, sentences: datasets.Dataset, labels: list[str]) -> None:
    """Every tag (in IOB2) is in the label list; else the first one that is not, by its line."""
    known = set(labels)
    for batch in _tag_batches(sentences):
        for tags, line in zip(batch["tags"], batch["line"], strict=True):
            unknown = [t for t in tags if t not in known]
            if unknown:
                raise UserError(
                    f"{split.where(line)}: tag {unknown[0]!r} (as IOB2) is not in the label list {labels} "
                    "(data.labels, or the tags of the training data). Fix the tag or add it to data.labels."
                )


def content_key(sentences: datasets.Dataset, columns: tuple[str, ...] = ("words", "tags")) -> str:
    """A key of the sentences' `columns`, read BATCH rows at a time: tokenizer.column_fingerprint
    reads 10,000, tens of MB of Python strings where sentences are long."""
    digest = hashlib.sha256()
    for batch in sentences.select_columns(list(columns)).iter(batch_size=BATCH):
        for row in zip(*(batch[c] for c in columns), strict=True):
            digest.update(json.dumps(row).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:20]


class SentenceTexts:
    """The training sentences as texts (words joined by spaces) for a tokenizer to train on, a batch
    at a time (a `litforge.data.text.tokenizer.TextBatches`), keyed by their words."""

    def __init__(self, sentences: datasets.Dataset) -> None:
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def key(self) -> str:
        return fingerprint("sentences", content_key(self.sentences, ("words",)))

    def batches(self) -> Iterator[list[str]]:
        for batch in self.sentences.select_columns(["words"]).iter(batch_size=BATCH):
            yield [" ".join(words) for words in batch["words"]]
