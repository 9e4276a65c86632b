"""What every text source shares: tables read from the user's files or a hub data set as raw splits
whose columns are read on demand, each split able to name one of its rows in a message."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litforge.data.hub import load_hub_dataset
from litforge.utils.errors import UserError

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
ROLE_KEYS = {"train": "train", "validation": "val", "test": "test"}


@dataclass
class RawSplit:
    """One split as loaded. `first_line` is the file line of row 0 (csv: 2, after the header);
    None where rows have no lines. `class_names` holds the names of integer-coded label columns."""

    origin: str
    column_names: list[str]
    read: Callable[[str], list[Any]]
    first_line: int | None = None
    class_names: dict[str, list[str]] = field(default_factory=dict)

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
        raw[role] = RawSplit(f"{name} [{split}]", list(dataset.column_names), _column_reader(dataset), None, names)
    return raw


def _column_reader(dataset: Any) -> Callable[[str], list[Any]]:
    return lambda column: dataset.with_format("arrow")[column][:].to_pylist()


def read_file(path: str, key: str) -> RawSplit:
    """A csv/tsv/jsonl/json/parquet file with a header or named fields; `key` is its config key."""
    import pandas as pd

    file = Path(path).expanduser()
    fmt = FILE_FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise UserError(f"{key}={path}: unknown file type {file.suffix!r}; give one of {sorted(FILE_FORMATS)}.")
    if not file.is_file():
        raise UserError(f"{key}={path}: no such file.")
    try:
        if fmt == "csv":
            frame = pd.read_csv(file, sep="\t" if file.suffix.lower() == ".tsv" else ",")
        elif fmt == "parquet":
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_json(file, lines=fmt == "jsonl")
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise UserError(f"{key}={path}: not a readable {fmt} file ({str(err).splitlines()[0][:160]}).") from err
    first_line = {"csv": 2, "jsonl": 1}.get(fmt)
    return RawSplit(str(file), [str(c) for c in frame.columns], lambda c: frame[c].tolist(), first_line)


def check_training_file(source: str, train_file: str | None, what: str) -> None:
    """Testing a checkpoint without data.test_path cuts its test split from the training file
    again: a training file that is gone is named, with data.test_path (a `what`) as the way out."""
    if source == "files" and train_file and not Path(train_file).expanduser().is_file():
        raise UserError(
            f"data.train_file={train_file} is gone: without data.test_path, testing cuts the test split from "
            f"the training file again. Give data.test_path=<{what}> to score a file of your own."
        )
