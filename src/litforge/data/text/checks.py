"""Check the text and label columns of raw splits a batch of rows at a time, refusing what would train
silently wrong: missing columns, empty texts, missing labels, labels the training split never had."""

import math
import re
from collections.abc import Callable
from typing import Any

from litforge.data.text.sources import RawSplit
from litforge.utils.errors import UserError

# a number written with a fraction of zeros: a label column pandas once upcast to float for its gaps
WHOLE_NUMBER = re.compile(r"[+-]?\d+\.0*")


def check_columns(splits: dict[str, RawSplit], columns: dict[str, str | None]) -> None:
    """`columns` maps config keys (data.text_column, ...) to the column names they give."""
    for split in splits.values():
        for key, column in columns.items():
            if column is not None and column not in split.column_names:
                raise UserError(
                    f"{split.origin} has no column {column!r} ({key}); its columns are {split.column_names}. "
                    f"Set {key} to one of them."
                )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class Found:
    """The rows of one column that a test picks: how many, and the first few with their values."""

    def __init__(self, split: RawSplit, column: str, picks: Callable[[Any], bool], shown: int = 3) -> None:
        self.count, self.rows, self.values = 0, [], []
        for start, values in split.batches(column):
            for i, value in enumerate(values):
                if picks(value):
                    self.count += 1
                    if len(self.rows) < shown:
                        self.rows.append(start + i)
                        self.values.append(value)


def check_texts(split: RawSplit, column: str) -> None:
    bad = Found(split, column, lambda v: _missing(v) or not isinstance(v, str) or not v.strip())
    if bad.count:
        shown = ", ".join(split.where(i) for i in bad.rows)
        raise UserError(
            f"{split.origin}: {bad.count} of {len(split)} rows have an empty or non-text {column!r} "
            f"(first: {shown}; value {bad.values[0]!r}). Every example needs a non-empty text: "
            "fill or remove those rows."
        )


def read_texts(split: RawSplit, column: str) -> list[str]:
    """The column's texts, checked: for inputs to predict (training data is checked by check_texts)."""
    check_texts(split, column)
    return split.read(column)


def label_key(value: Any) -> str:
    """Labels as text, so 1, 1.0 and "1" are one label (a column of whole numbers with gaps is
    written 1.0, 2.0, ... by pandas)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and WHOLE_NUMBER.fullmatch(value):
        return str(int(float(value)))
    return str(value)


class LabelKeys:
    """A split's label values as the text of its labels: a hub data set's class ids as their names,
    and with `label_names` the integer label k as its k-th name; None for a value that names no label."""

    def __init__(self, split: RawSplit, column: str, label_names: list[str] | None = None) -> None:
        self.class_names = split.class_names.get(column)
        self.names = [str(name) for name in label_names or []]
        self.valid = {str(k): name for k, name in enumerate(self.names)}

    def __call__(self, value: Any) -> str | None:
        if self.class_names is not None:
            in_range = isinstance(value, int) and 0 <= value < len(self.class_names)
            return self.class_names[value] if in_range else None
        key = label_key(value)
        return self.valid.get(key) if self.names else key

    def state(self) -> tuple[Any, ...]:
        """What decides the keys (part of cache keys)."""
        return self.class_names, self.names


def check_labels(split: RawSplit, column: str, keys: LabelKeys, known: list[str] | None = None) -> set[str]:
    """The split's labels (as `keys` reads them), every row checked: present, naming a label, and with
    `known` (the training labels) one of those."""
    missing = Found(split, column, _missing, shown=1)
    if missing.count:
        raise UserError(
            f"{split.origin}: {missing.count} of {len(split)} rows have no label in column {column!r} "
            f"(first: {split.where(missing.rows[0])}). Give every row a label, or remove the unlabelled rows."
        )
    outside = Found(split, column, lambda v: keys(v) is None, shown=1)
    if outside.count and keys.class_names is not None:
        names = keys.class_names
        raise UserError(
            f"{split.origin}: label {outside.values[0]} at {split.where(outside.rows[0])} is not one of the "
            f"{len(names)} classes {names} ({outside.count} such rows; -1 marks hidden labels). "
            "Use a labelled split (data.train_split / data.val_split / data.test_split)."
        )
    if outside.count:
        raise UserError(
            f"{split.where(outside.rows[0])}: label {label_key(outside.values[0])!r} in column {column!r} is not "
            f"one of the integers 0 to {len(keys.names) - 1} that data.label_names={keys.names} names. Give one "
            "name per integer label, or leave data.label_names unset for labels written as names."
        )
    found: set[str] = set()
    for _, values in split.batches(column):
        found.update(keys(v) for v in values)
    unknown = sorted(found - set(known)) if known is not None else []
    if unknown:
        first = Found(split, column, lambda v: keys(v) in unknown, shown=1).rows[0]
        raise UserError(
            f"{split.origin}: labels {unknown[:5]} in column {column!r} (first at {split.where(first)}) "
            f"are not among the training labels {known}. A model cannot predict a class it never "
            "trained on: fix those labels or add examples of them to the training data."
        )
    return found


def label_names(split: RawSplit, column: str, found: set[str]) -> list[str]:
    """The class names in id order: the data set's own where it has them, else the sorted labels
    (numerically where all labels are integers)."""
    if column in split.class_names:
        return list(split.class_names[column])
    if len(found) < 2:
        raise UserError(
            f"{split.origin}: column {column!r} holds only the label {sorted(found)}; "
            "classification needs at least two classes in the training split."
        )
    numeric = all(k.lstrip("-").isdigit() for k in found)
    return sorted(found, key=int) if numeric else sorted(found)


class LabelIds:
    """The batched-map step that adds each row's label id (`labels`), from the label column's values."""

    def __init__(self, column: str, keys: LabelKeys, names: list[str]) -> None:
        self.column, self.keys = column, keys
        self.index = {name: i for i, name in enumerate(names)}

    def __call__(self, batch: dict[str, list]) -> dict[str, list[int]]:
        return {"labels": [self.index[self.keys(v)] for v in batch[self.column]]}
