"""Masked-LM training text read as a stream (`data.streaming=true`): nothing is tokenised ahead or
cached, each pass over the source is shuffled in a buffer, cut into one shard per DDP rank and
loader worker, tokenised on the fly and masked per batch with a seed of the batch's place in its
shard, so a resumed run that skips what a shard had produced sees the batches an uninterrupted
run would have seen. Validation and test are small splits held out of the stream (or files)."""

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from torch.utils.data import IterableDataset

from litforge.data.loaders import PRODUCED, WORKER
from litforge.data.text import corpus
from litforge.data.text.sources import table_builder
from litforge.data.text.tokenizer import fingerprint
from litforge.utils.errors import UserError


@dataclass(frozen=True)
class TextStream:
    """The non-blank texts of a source, in its own order, the first `skip` of them held out
    (validation and test): the user's file, a hub split or the generated corpus."""

    source: str
    path: str | None = None
    name: str | None = None
    config_name: str | None = None
    split: str = "train"
    text_column: str = "text"
    cache_dir: str = "."
    num_examples: int = 0
    seed: int = 0
    shuffle_buffer: int = 10_000
    skip: int = 0

    def key(self) -> str:
        """The source's identity for caches: a file's content digest, a hub id, config and split."""
        if self.source == "files":
            return fingerprint("file", corpus.file_digest(Path(self.path).expanduser()), self.text_column, self.skip)
        if self.source == "hub":
            return fingerprint("hub", self.name, self.config_name, self.split, self.text_column, self.skip)
        return fingerprint("generated", self.num_examples, self.seed, self.skip)

    def _raw(self) -> datasets.IterableDataset:
        if self.source == "generated":
            from litforge.data.text.masked_lm_sources import generate_corpus

            return corpus.from_texts(generate_corpus(self.num_examples, self.seed)).to_iterable_dataset()
        cache = {"cache_dir": str(Path(self.cache_dir) / "streams")}
        if self.source == "hub":
            return datasets.load_dataset(self.name, self.config_name, split=self.split, streaming=True, **cache)
        file = Path(self.path).expanduser()
        builder, options = ("text", {}) if file.suffix.lower() == ".txt" else table_builder(file, "data.train_file")
        return datasets.load_dataset(builder, data_files=str(file), split="train", streaming=True, **cache, **options)

    def _column(self) -> str:
        """The column the texts are in: a .txt file's lines and the generated corpus are `text`."""
        lines = self.source == "files" and Path(self.path).suffix.lower() == ".txt"
        return corpus.TEXT if lines or self.source == "generated" else self.text_column

    def open(self) -> datasets.IterableDataset:
        """All non-blank texts, held-out ones included, as a `text` column."""
        column = self._column()
        texts = self._raw().select_columns([column])
        if column != corpus.TEXT:
            texts = texts.rename_column(column, corpus.TEXT)
        return texts.filter(lambda batch: corpus._non_blank(batch[corpus.TEXT]), batched=True)

    def check(self, where: str) -> None:
        """The text column is there (`where` names the source in the message)."""
        column = self._column()
        try:
            first = next(iter(self._raw().take(1).iter(batch_size=1)), None)
        except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as err:
            raise UserError(f"{where}: not readable as a stream ({str(err).splitlines()[0][:160]}).") from err
        if first is None:
            raise UserError(f"{where}: holds no text; give a non-empty corpus")
        if column not in first:
            raise UserError(f"data.text_column={column}: {where} has no such column; its columns are {sorted(first)}.")

    def held_out(self, start: int, count: int) -> list[str]:
        """`count` texts from the `start`-th non-blank text on (validation, test)."""
        return [row[corpus.TEXT] for row in self.open().skip(start).take(count)]

    def _texts(self, dataset: datasets.IterableDataset) -> Iterator[str]:
        for batch in dataset.iter(batch_size=corpus.BATCH):
            yield from batch[corpus.TEXT]

    def batches(self) -> Iterator[list[str]]:
        """The training texts in order, in lists of corpus.BATCH (a tokenizer trains on them)."""
        for batch in self.open().skip(self.skip).iter(batch_size=corpus.BATCH):
            yield batch[corpus.TEXT]

    def shuffled(self, pass_index: int) -> Iterator[str]:
        """The training texts of one pass, shuffled in a buffer of `shuffle_buffer` texts by (seed, pass)."""
        seed = self.seed * 100_003 + pass_index
        # .iter, not iter(): datasets would split an IterableDataset by file among loader workers itself
        return self._texts(self.open().skip(self.skip).shuffle(seed=seed, buffer_size=self.shuffle_buffer))


def _stream(hp: Any, cache_dir: str, split: str | None = None, skip: int = 0) -> TextStream:
    """The stream of `hp` (a masked-LM data module's hyperparameters) from its training source."""
    return TextStream(
        source=hp.source,
        path=hp.train_file,
        name=hp.name,
        config_name=hp.config_name,
        split=split or hp.train_split,
        text_column=hp.text_column,
        cache_dir=cache_dir,
        num_examples=hp.num_examples,
        seed=hp.seed,
        shuffle_buffer=hp.shuffle_buffer,
        skip=skip,
    )


def _check_source(hp: Any, hub_example: str) -> None:
    if hp.source == "hub" and not hp.name:
        raise UserError(f"data.source=hub needs data.name, a hub id such as {hub_example}")
    if hp.source != "files":
        return
    if not hp.train_file:
        raise UserError("data.train_file is not set: give a .txt (one text a line), csv, jsonl or parquet file")
    suffix = Path(hp.train_file).suffix.lower()
    if suffix not in corpus.TEXT_FORMATS:
        raise UserError(
            f"data.train_file={hp.train_file}: unknown file type {suffix!r}; give one of {sorted(corpus.TEXT_FORMATS)}."
        )
    if not Path(hp.train_file).expanduser().is_file():
        raise UserError(f"data.train_file={hp.train_file}: no such file.")


def load_streams(
    hp: Any, cache_dir: str, read_file: Callable[[str, str], Any], test_path: str | None, hub_example: str
) -> dict[str, Any]:
    """The training stream (its source checked) and the validation and test texts as Arrow tables:
    `val_file`/`test_path` (read by `read_file(path, key)`), the first `val_examples`/`test_examples`
    of a hub's `val_split`/`test_split`, else the source's first texts, which the stream skips."""
    _check_source(hp, hub_example)
    hub = hp.source == "hub"
    where = {"files": f"data.train_file={hp.train_file}", "hub": f"{hp.name} [{hp.train_split}]"}.get(
        hp.source, "the generated corpus"
    )
    source = _stream(hp, cache_dir)
    source.check(where)
    carve_val, carve_test = not (hp.val_file or (hub and hp.val_split)), not (test_path or (hub and hp.test_split))
    val_count, test_count = hp.val_examples if carve_val else 0, hp.test_examples if carve_test else 0
    carved = val_count + test_count
    raw: dict[str, Any] = {}
    if carved:
        # one more than the held-out texts: training needs at least one of its own
        held = source.held_out(0, carved + 1)
        if len(held) <= carved:
            raise UserError(
                f"data.val_examples={hp.val_examples} + data.test_examples={hp.test_examples}: {where} holds only "
                f"{len(held)} non-blank texts, and training needs more beside them. Give smaller ones, or "
                "data.val_file/data.test_path."
            )
        if val_count:
            raw["validation"] = corpus.from_texts(held[:val_count])
        if test_count:
            raw["test"] = corpus.from_texts(held[val_count:carved])
    if hp.val_file:
        raw["validation"] = read_file(hp.val_file, "data.val_file")
    elif not carve_val:
        raw["validation"] = corpus.from_texts(_stream(hp, cache_dir, hp.val_split).held_out(0, hp.val_examples))
    if test_path:
        raw["test"] = read_file(test_path, "data.test_path")
    elif not carve_test:
        raw["test"] = corpus.from_texts(_stream(hp, cache_dir, hp.test_split).held_out(0, hp.test_examples))
    raw["train"] = _stream(hp, cache_dir, skip=carved)
    return raw


class MaskedLMStream(IterableDataset):
    """Tokenised training examples of an endless run of passes over `texts`: text i of a pass goes to
    shard i % (world_size * workers), rank-major, and each loader worker tokenises only its own
    texts, `chunk` at a time (`encode` of a list of texts: a dict of columns). An example carries its
    worker and how many examples its shard has produced with it; `start` (one count per worker,
    from a checkpoint) skips that many of each shard's examples, without tokenising them where one
    text is one example (`one_per_text`)."""

    def __init__(
        self,
        texts: TextStream,
        encode: Callable[[list[str]], dict[str, list]],
        one_per_text: bool,
        chunk: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.texts, self.encode, self.one_per_text, self.chunk = texts, encode, one_per_text, chunk
        self.rank, self.world_size = rank, world_size
        self.start: list[int] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shard, shards = self.rank * workers + worker, self.world_size * workers
        skip = self.start[worker] if self.start else 0
        produced = 0
        for pass_index in itertools.count():
            mine = itertools.islice(self.texts.shuffled(pass_index), shard, None, shards)
            empty = True
            while chunk := list(itertools.islice(mine, self.chunk)):
                empty = False
                if self.one_per_text and produced < skip:
                    dropped = min(skip - produced, len(chunk))
                    chunk, produced = chunk[dropped:], produced + dropped
                    if not chunk:
                        continue
                encoded = self.encode(chunk)
                for values in zip(*encoded.values(), strict=True):
                    produced += 1
                    if produced > skip:
                        yield {**dict(zip(encoded, values, strict=True)), WORKER: worker, PRODUCED: produced}
            if empty:
                raise UserError(
                    f"the training stream gives shard {shard} of {shards} (DDP ranks x data.num_workers) no text: "
                    "it holds fewer training texts than that. Give a larger corpus, or fewer workers or devices."
                )


class StreamCollate:
    """Collates one worker's examples with a masker seeded by (data.seed, worker, examples produced),
    so each batch's masks are fixed by its place in the stream, not by the RNG's state; the batch
    carries its worker and count for the loader's position."""

    def __init__(self, masker: Callable[[int], Callable], seed: int, rank: int) -> None:
        self.masker, self.seed, self.rank = masker, seed, rank

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        worker, produced = features[-1][WORKER], features[-1][PRODUCED]
        rows = [{k: v for k, v in f.items() if k not in (WORKER, PRODUCED)} for f in features]
        seed = int(fingerprint("masks", self.seed, self.rank, worker, produced), 16) % 2**31
        batch = self.masker(seed)(rows)
        batch[WORKER], batch[PRODUCED] = worker, produced
        return batch
