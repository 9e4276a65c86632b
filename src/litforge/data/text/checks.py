"""Read the text and label columns of raw splits, refusing what would train silently wrong:
missing columns, empty texts, missing labels, labels the training split never had."""

import math
from typing import Any

from litforge.data.text.sources import RawSplit
from litforge.utils.errors import UserError


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


def read_texts(split: RawSplit, column: str) -> list[str]:
    values = split.read(column)
    bad = [i for i, v in enumerate(values) if _missing(v) or not isinstance(v, str) or not v.strip()]
    if bad:
        shown = ", ".join(split.where(i) for i in bad[:3])
        raise UserError(
            f"{split.origin}: {len(bad)} of {len(values)} rows have an empty or non-text {column!r} "
            f"(first: {shown}; value {values[bad[0]]!r}). Every example needs a non-empty text: "
            "fill or remove those rows."
        )
    return values


def _label_key(value: Any) -> str:
    """Labels as text, so 1, 1.0 (pandas upcasts int columns with gaps) and "1" are one label."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_label_keys(split: RawSplit, column: str) -> list[str]:
    values = split.read(column)
    missing = [i for i, v in enumerate(values) if _missing(v)]
    if missing:
        raise UserError(
            f"{split.origin}: {len(missing)} of {len(values)} rows have no label in column {column!r} "
            f"(first: {split.where(missing[0])}). Give every row a label, or remove the unlabelled rows."
        )
    names = split.class_names.get(column)
    if names is None:
        return [_label_key(v) for v in values]
    outside = [i for i, v in enumerate(values) if not 0 <= v < len(names)]
    if outside:
        raise UserError(
            f"{split.origin}: label {values[outside[0]]} at {split.where(outside[0])} is not one of the "
            f"{len(names)} classes {names} ({len(outside)} such rows; -1 marks hidden labels). "
            "Use a labelled split (data.train_split / data.val_split / data.test_split)."
        )
    return [names[v] for v in values]


def label_names(split: RawSplit, column: str, keys: list[str]) -> list[str]:
    """The class names in id order: the data set's own where it has them, else the sorted labels
    (numerically where all labels are integers)."""
    if column in split.class_names:
        return list(split.class_names[column])
    found = set(keys)
    if len(found) < 2:
        raise UserError(
            f"{split.origin}: column {column!r} holds only the label {sorted(found)}; "
            "classification needs at least two classes in the training split."
        )
    numeric = all(k.lstrip("-").isdigit() for k in found)
    return sorted(found, key=int) if numeric else sorted(found)


def encode_labels(split: RawSplit, column: str, keys: list[str], names: list[str]) -> list[int]:
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({k for k in keys if k not in index})
    if unknown:
        first = next(i for i, k in enumerate(keys) if k not in index)
        raise UserError(
            f"{split.origin}: labels {unknown[:5]} in column {column!r} (first at {split.where(first)}) "
            f"are not among the training labels {names}. A model cannot predict a class it never "
            "trained on: fix those labels or add examples of them to the training data."
        )
    return [index[k] for k in keys]
