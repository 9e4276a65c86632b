"""Corpora as memory-mapped Arrow tables of one `text` column: read from the user's files in
batches, never as one Python list, cached on disk by the file's content, so a corpus larger than
memory is read, hashed, split and tokenised in pieces. Every rank and every run reuses the cache."""

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from litforge.data.text.sources import FILE_FORMATS, hub_splits, read_file
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

TEXT = "text"
TEXT_FORMATS = {".txt", *FILE_FORMATS}
# rows per batch read, written and hashed: a few MB of text at a time
BATCH = 10_000


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:20]


def text_batches(dataset: datasets.Dataset, batch_size: int = BATCH) -> Iterator[list[str]]:
    """The `text` column in lists of `batch_size` texts."""
    for batch in dataset.select_columns([TEXT]).iter(batch_size=batch_size):
        yield batch[TEXT]


def _non_blank(texts: list[Any]) -> list[bool]:
    return [isinstance(t, str) and bool(t.strip()) for t in texts]


def write_arrow(file: Path, batches: Iterator[dict[str, list]], features: datasets.Features, target: Path) -> None:
    """`batches` read from `file` as an Arrow file, written beside `target` and renamed at the end:
    a bad line anywhere in the file leaves no table behind."""
    tmp = target.with_name(f".{target.name}-{uuid.uuid4().hex[:12]}")
    try:
        with datasets.arrow_writer.ArrowWriter(features=features, path=str(tmp)) as writer:
            for batch in batches:
                writer.write_batch(batch)
            writer.finalize()
        os.replace(tmp, target)
    except UnicodeDecodeError as err:
        raise UserError(f"{file}: not a UTF-8 text file ({err.reason} at byte {err.start}); save it as UTF-8.") from err
    finally:
        tmp.unlink(missing_ok=True)


def _line_batches(file: Path) -> Iterator[dict[str, list[str]]]:
    """The file's non-blank lines, BATCH at a time."""
    with open(file, encoding="utf-8") as lines:
        batch: list[str] = []
        for line in lines:
            if line.strip():
                batch.append(line.rstrip("\r\n"))
            if len(batch) == BATCH:
                yield {TEXT: batch}
                batch = []
        if batch:
            yield {TEXT: batch}


def _read_table(file: Path, key: str, text_column: str, cache_dir: Path) -> datasets.Dataset:
    """A csv/tsv/jsonl/json/parquet file's `text_column`, read by datasets in chunks."""
    table = read_file(str(file), key, cache_dir).dataset
    if text_column not in table.column_names:
        raise UserError(
            f"data.text_column={text_column}: {file} has no such column; its columns are {table.column_names}."
        )
    return table.select_columns([text_column]).rename_columns({text_column: TEXT} if text_column != TEXT else {})


def read_corpus(path: str, key: str, text_column: str, cache_dir: Path) -> datasets.Dataset:
    """The non-blank texts of a .txt file (one a line) or of a table file's `text_column`,
    memory-mapped from `cache_dir`; `key` is the config key the path came from."""
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in TEXT_FORMATS:
        raise UserError(f"{key}={path}: unknown file type {file.suffix!r}; give one of {sorted(TEXT_FORMATS)}.")
    if not file.is_file():
        raise UserError(f"{key}={path}: no such file.")
    target = cache_dir / "corpora" / f"{file_digest(file)}-{suffix[1:]}-{text_column}.arrow"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".txt":
            write_arrow(file, _line_batches(file), datasets.Features({TEXT: datasets.Value("string")}), target)
        else:
            _read_table(file, key, text_column, cache_dir).map(
                lambda batch: {TEXT: [t for t, keep in zip(batch[TEXT], _non_blank(batch[TEXT]), strict=True) if keep]},
                batched=True,
                batch_size=BATCH,
                remove_columns=[TEXT],
                features=datasets.Features({TEXT: datasets.Value("string")}),
                cache_file_name=str(target),
                desc="reading texts",
            )
        log.info("%s: texts cached in %s", file, target)
    return datasets.Dataset.from_file(str(target))


def select_rows(dataset: datasets.Dataset, index: Any) -> datasets.Dataset:
    """The rows `index` (a numpy array) names, as an index file onto the same memory-mapped table
    (`carve_missing_splits`' `take`). datasets' own `select` makes a Python list of the index and
    keeps it in memory: tens of bytes a row, gigabytes for a corpus of millions of lines."""
    import numpy as np
    import pyarrow as pa
    from datasets.table import MemoryMappedTable

    if not dataset.cache_files or dataset._indices is not None:
        return dataset.select(index)
    source = Path(dataset.cache_files[0]["filename"])
    digest = hashlib.sha256(source.name.encode() + np.ascontiguousarray(index, dtype=np.uint64).tobytes())
    target = source.with_name(f"{source.stem}-rows-{digest.hexdigest()[:20]}.arrow")
    if not target.is_file():
        table = pa.table({"indices": pa.array(np.asarray(index, dtype=np.uint64))})
        tmp = target.with_name(f".{target.name}-{uuid.uuid4().hex[:12]}")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=BATCH * 10)
        os.replace(tmp, target)
    indices = MemoryMappedTable.from_file(str(target))
    return datasets.Dataset(dataset.data, info=dataset.info, indices_table=indices, fingerprint=digest.hexdigest()[:32])


def non_blank(dataset: datasets.Dataset) -> datasets.Dataset:
    """The rows whose text is a non-blank string (corpora are full of blank lines and gaps)."""
    return dataset.filter(lambda batch: _non_blank(batch[TEXT]), batched=True, batch_size=BATCH, desc="blank lines")


def from_texts(texts: list[str]) -> datasets.Dataset:
    """Texts already in memory (the generated corpus)."""
    return datasets.Dataset.from_dict({TEXT: texts})


def read_hub(
    name: str, config_name: str | None, cache_dir: str, splits: dict[str, str | None], text_column: str
) -> dict[str, datasets.Dataset]:
    """The named splits of a hub data set, as its own memory-mapped Arrow files."""
    raw = {}
    for role, split, dataset in hub_splits(name, config_name, cache_dir, splits):
        if text_column not in dataset.column_names:
            raise UserError(
                f"data.text_column={text_column}: {name} [{split}] has no such column; "
                f"its columns are {dataset.column_names}."
            )
        column = dataset.select_columns([text_column])
        raw[role] = non_blank(column.rename_columns({text_column: TEXT} if text_column != TEXT else {}))
    return raw
