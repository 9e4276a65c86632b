"""What every text source shares: tables read from the user's files or a hub data set as raw splits,
Arrow data sets read a batch of rows at a time (memory-mapped where they come from disk), each split
able to name one of its rows in a message."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litforge.data.hub import load_hub_dataset
from litforge.utils.errors import UserError

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
ROLE_KEYS = {"train": "train", "validation": "val", "test": "test"}
# datasets' builder of each file format
BUILDERS = {"csv": "csv", "jsonl": "json", "json": "json", "parquet": "parquet"}
# rows per batch read and checked: a few MB of text at a time
BATCH = 10_000


@dataclass
class RawSplit:
    """One split as loaded: an Arrow data set, memory-mapped where it was read from a file or the hub.
    `first_line` is the file line of row 0 (csv: 2, after the header); None where rows have no lines.
    `class_names` holds the names of integer-coded label columns."""

    origin: str
    dataset: Any
    first_line: int | None = None
    class_names: dict[str, list[str]] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return list(self.dataset.column_names)

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, column: str) -> Iterator[tuple[int, list[Any]]]:
        """(row of the first value, values) of `column`, BATCH rows at a time."""
        start = 0
        for batch in self.dataset.select_columns([column]).iter(batch_size=BATCH):
            yield start, batch[column]
            start += len(batch[column])

    def read(self, column: str) -> list[Any]:
        """The whole column as a list: for inputs to predict, never for training data."""
        return self.dataset[column]

    def where(self, row: int) -> str:
        if self.first_line is not None:
            return f"{self.origin} line {row + self.first_line}"
        return f"{self.origin} row {row}"


def hub_splits(
    name: str, config_name: str | None, cache_dir: str, splits: dict[str, str | None]
) -> Iterator[tuple[str, str, Any]]:
    """(role, split name, dataset) of each split `splits` names (e.g. {"train": "train", "test": None})."""
    loaded = load_hub_dataset(name, config_name, cache_dir)
    for role, split in splits.items():
        if split is None:
            continue
        if split not in loaded:
            raise UserError(
                f"data.{ROLE_KEYS[role]}_split={split}: {name} has no such split; its splits are {sorted(loaded)}."
            )
        yield role, split, loaded[split]


def load_hub(name: str, config_name: str | None, cache_dir: str, splits: dict[str, str | None]) -> dict[str, RawSplit]:
    """The named splits of a hub data set (e.g. {"train": "train", "test": "validation"})."""
    import datasets

    raw = {}
    for role, split, dataset in hub_splits(name, config_name, cache_dir, splits):
        names = {c: f.names for c, f in dataset.features.items() if isinstance(f, datasets.ClassLabel)}
        raw[role] = RawSplit(f"{name} [{split}]", dataset, None, names)
    return raw


@contextmanager
def _tables_dir(cache_dir: Path | None) -> Iterator[tuple[str, bool]]:
    """Where datasets writes a file's table, and whether to keep it in memory (no cache_dir: inputs to
    predict, read once into a temporary folder)."""
    if cache_dir is not None:
        yield str(cache_dir / "tables"), False
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp, True


def _csv_options(file: Path, key: str) -> dict[str, Any]:
    """Every column read as text: pandas guesses a column's type chunk by chunk, and a number column
    with a gap in one chunk only (a float there, an int elsewhere) would not make one table."""
    import datasets
    import pandas as pd

    sep = "\t" if file.suffix.lower() == ".tsv" else ","
    try:
        header = pd.read_csv(file, sep=sep, nrows=0)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise UserError(f"{key}={file}: not a readable csv file ({str(err).splitlines()[0][:160]}).") from err
    features = datasets.Features({str(c): datasets.Value("string") for c in header.columns})
    return {"sep": sep, "features": features}


def table_builder(file: Path, key: str) -> tuple[str, dict[str, Any]]:
    """The datasets builder that reads a table file (its suffix one of FILE_FORMATS), and its options."""
    fmt = FILE_FORMATS[file.suffix.lower()]
    return BUILDERS[fmt], _csv_options(file, key) if fmt == "csv" else {}


def read_file(path: str, key: str, cache_dir: Path | None = None) -> RawSplit:
    """A csv/tsv/jsonl/json/parquet file with a header or named fields; `key` is its config key. Read
    by datasets in chunks into an Arrow table under `cache_dir`, memory-mapped from there (read
    again when the file changes); without `cache_dir`, into memory."""
    import datasets

    file = Path(path).expanduser()
    fmt = FILE_FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise UserError(f"{key}={path}: unknown file type {file.suffix!r}; give one of {sorted(FILE_FORMATS)}.")
    if not file.is_file():
        raise UserError(f"{key}={path}: no such file.")
    builder, options = table_builder(file, key)
    with _tables_dir(cache_dir) as (where, keep):
        try:
            dataset = datasets.load_dataset(
                builder, data_files=str(file), split="train", cache_dir=where, keep_in_memory=keep, **options
            )
        except (ValueError, OSError, TypeError, datasets.exceptions.DatasetGenerationError) as err:
            cause = err.__cause__ or err
            raise UserError(f"{key}={path}: not a readable {fmt} file ({str(cause).splitlines()[0][:160]}).") from err
    first_line = {"csv": 2, "jsonl": 1}.get(fmt)
    return RawSplit(str(file), dataset, first_line)


def check_training_file(source: str, train_file: str | None, what: str) -> None:
    """Testing a checkpoint without data.test_path cuts its test split from the training file
    again: a training file that is gone is named, with data.test_path (a `what`) as the way out."""
    if source == "files" and train_file and not Path(train_file).expanduser().is_file():
        raise UserError(
            f"data.train_file={train_file} is gone: without data.test_path, testing cuts the test split from "
            f"the training file again. Give data.test_path=<{what}> to score a file of your own."
        )
