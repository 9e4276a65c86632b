"""Where labelled texts come from: the generated review corpus, a hub data set, the user's files.

Each loader returns raw splits by name ("train", and "validation"/"test" where the source has
them); columns are read on demand, and every split knows how to name one of its rows in a message.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litforge.data.hub import load_hub_dataset
from litforge.data.text.sentiment_corpus import generate_reviews
from litforge.utils.errors import UserError

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


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


def load_generated(num_examples: int, seed: int, label_noise: float) -> dict[str, RawSplit]:
    columns = generate_reviews(num_examples, seed, label_noise)
    origin = f"generated corpus (data.num_examples={num_examples}, seed {seed})"
    return {"train": RawSplit(origin, list(columns), columns.__getitem__)}


def load_hub(name: str, config_name: str | None, cache_dir: str, splits: dict[str, str | None]) -> dict[str, RawSplit]:
    """The named splits of a hub data set (e.g. {"train": "train", "test": "validation"})."""
    import datasets

    loaded = load_hub_dataset(name, config_name, cache_dir)
    raw = {}
    for role, split in splits.items():
        if split is None:
            continue
        if split not in loaded:
            key = {"train": "train_split", "validation": "val_split", "test": "test_split"}[role]
            raise UserError(f"data.{key}={split}: {name} has no such split; its splits are {sorted(loaded)}.")
        dataset = loaded[split]
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


def load_files(train_file: str | None, val_file: str | None, test_file: str | None) -> dict[str, RawSplit]:
    if not train_file:
        raise UserError(
            "data.train_file is not set: give your training file, e.g. data.train_file=data/reviews.csv "
            "(csv/tsv/jsonl/json/parquet with a text and a label column)."
        )
    files = {
        "train": (train_file, "data.train_file"),
        "validation": (val_file, "data.val_file"),
        "test": (test_file, "data.test_file"),
    }
    return {role: read_file(path, key) for role, (path, key) in files.items() if path}


def check_training_file(source: str, train_file: str | None, what: str) -> None:
    """Testing a checkpoint without data.test_path cuts its test split from the training file
    again: a training file that is gone is named, with data.test_path (a `what`) as the way out."""
    if source == "files" and train_file and not Path(train_file).expanduser().is_file():
        raise UserError(
            f"data.train_file={train_file} is gone: without data.test_path, testing cuts the test split from "
            f"the training file again. Give data.test_path=<{what}> to score a file of your own."
        )
