"""Which columns of a table a model reads, and the checks that turn them into arrays: numeric
features as floats (NaN where imputation was asked for), categorical ones as text (None: missing)."""

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from litforge.data.tabular.categories import check_categories, is_date_like, too_many_categories
from litforge.data.tabular.sources import Table
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

# a whole-number column of all-distinct values under such a name numbers rows: no feature
ID_NAME = re.compile(r"(.*[_\s-])?id", re.IGNORECASE)
TargetEncoder = Callable[[Table, list[str]], pd.DataFrame]


@dataclass
class TabularData:
    """One row per example: float32 numeric features (NaN where imputed later), categorical values as
    text (None where missing), float32 targets, and the table's index labels of the rows kept."""

    features: np.ndarray
    categories: np.ndarray
    targets: np.ndarray
    feature_names: list[str]
    categorical_names: list[str]
    target_names: list[str]
    rows: pd.Index


def column_names(names: str | Sequence[str] | None, key: str) -> list[str] | None:
    if names is None:
        return None
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    if not names:
        raise UserError(f"data.{key}=[]: name at least one column")
    return names


def check_present(table: Table, names: Sequence[str], key: str) -> None:
    columns = [str(c) for c in table.frame.columns]
    for name in names:
        if name not in columns:
            raise UserError(
                f"data.{key}: no column {name!r} in {table.origin}; its columns are {columns}. "
                f"Set data.{key} to column names of the table."
            )


def _is_numeric(column: pd.Series) -> bool:
    """Numbers, or text with some numbers in it: kept numeric so that its stray non-number is reported."""
    return pd.api.types.is_numeric_dtype(column) or bool(pd.to_numeric(column, errors="coerce").notna().any())


def _is_row_number(name: str, column: pd.Series) -> bool:
    values = pd.to_numeric(column, errors="coerce").dropna()
    whole = bool(len(values)) and bool((values == values.round()).all())
    return ID_NAME.fullmatch(name) is not None and whole and values.nunique() == len(column)


def _default_features(
    table: Table, excluded: list[str], categorical: str | list[str] | None
) -> tuple[list[str], list[str]]:
    """Numeric features and categorical columns when data.features is null: every column but the
    excluded ones; text columns are categorical with data.categorical=auto (dates and ID-like text
    dropped, with a log line), else left out; whole-number ID columns are dropped."""
    listed = categorical if isinstance(categorical, list) else []
    numeric, text, dropped = [], [], []
    for name, column in table.frame.items():
        name = str(name)
        if name in excluded or name in listed:
            continue
        if not _is_numeric(column):
            text.append(name)
        elif _is_row_number(name, column):
            dropped.append(name)
        else:
            numeric.append(name)
    if dropped:
        log.info("dropped ID-like column(s) %s: whole numbers, one per row (set data.features to keep them)", dropped)
    if categorical != "auto":
        if text:
            log.info(
                "left out non-numeric columns %s; set data.categorical=auto (or list them) to use them as "
                "categories, or list the features in data.features to choose",
                text,
            )
        chosen = listed
    else:
        dates = [name for name in text if is_date_like(table.frame[name])]
        ids = [name for name in text if name not in dates and too_many_categories(table.frame[name])]
        if dates:
            log.info("dropped date-like column(s) %s: derive numbers from them (year, day of year) as columns", dates)
        if ids:
            log.info("dropped ID-like column(s) %s: nearly a distinct value per row, no category to learn", ids)
        chosen = [name for name in text if name not in dates and name not in ids]
    if not numeric and not chosen:
        raise UserError(f"{table.origin} has no usable feature column besides the target: set data.features.")
    return numeric, chosen


def _explicit_features(table: Table, features: list[str], categorical: str | list[str] | None) -> tuple[list, list]:
    if categorical == "auto":
        chosen = [name for name in features if not _is_numeric(table.frame[name])]
    else:
        chosen = [name for name in features if name in (categorical or [])]
    return [name for name in features if name not in chosen], chosen


def as_numbers(table: Table, columns: list[str]) -> pd.DataFrame:
    numbers = {}
    for name in columns:
        column = table.frame[name]
        values = pd.to_numeric(column, errors="coerce") if not pd.api.types.is_bool_dtype(column) else column
        wrong = values.isna() & column.notna()
        if wrong.any():
            label = wrong.idxmax()
            raise UserError(
                f"column {name!r} of {table.origin} is not numeric: {table.row(label)} holds {column[label]!r}. "
                "Fix that value, or leave the column out by listing numeric columns in data.features "
                "(or name it in data.categorical)."
            )
        numbers[name] = values.astype("float64")
    return pd.DataFrame(numbers, index=table.frame.index)


def handle_missing(
    table: Table, numbers: pd.DataFrame, num_targets: int, drop_na: bool, impute: str | None
) -> pd.DataFrame:
    """Rows with NaN or +-inf: dropped, left as NaN for the data module to impute, or refused.
    The targets are the first `num_targets` columns of `numbers`."""
    bad = ~np.isfinite(numbers.to_numpy())
    rows = bad.any(axis=1)
    if not rows.any():
        return numbers
    if drop_na:
        log.info("data.drop_na=true: dropped %d of %d rows with missing or infinite values", rows.sum(), len(rows))
        return numbers[~rows]
    refused = bad.copy()
    if impute:
        # imputing fills features only: a made-up target would be trained and scored on
        refused[:, num_targets:] = False
        if not refused.any():
            return numbers.replace([np.inf, -np.inf], np.nan)
    row, col = np.argwhere(refused)[0]
    value = numbers.iat[row, col]
    kind = "a missing (empty or NaN)" if np.isnan(value) else f"an infinite ({value})"
    fill = "" if col < num_targets else ", or data.impute=mean (or median) to fill missing features"
    raise UserError(
        f"column {numbers.columns[col]!r} of {table.origin} has {kind} value in {table.row(numbers.index[row])} "
        f"(rows with missing or infinite values: {int(rows.sum())} of {len(rows)}). Fix the data, "
        f"or set data.drop_na=true to drop such rows{fill}."
    )


def category_text(table: Table, names: list[str], rows: pd.Index) -> np.ndarray:
    """The categorical columns' values of `rows` as text; None where a value is missing (or empty).
    Whole numbers read as floats (a column with gaps) are written without their ".0"."""
    out = np.empty((len(rows), len(names)), dtype=object)
    for j, name in enumerate(names):
        for i, value in enumerate(table.frame.loc[rows, name].tolist()):
            if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
                out[i, j] = None
            elif isinstance(value, float) and value.is_integer():
                out[i, j] = str(int(value))
            else:
                out[i, j] = str(value).strip()
    return out


def select(
    table: Table,
    target: str | Sequence[str],
    features: Sequence[str] | None,
    drop_na: bool = False,
    impute: str | None = None,
    categorical: str | Sequence[str] | None = None,
    drop: Sequence[str] | None = None,
    encode_targets: TargetEncoder = as_numbers,
    check_cardinality: bool = True,
) -> TabularData:
    """The target column(s) and feature columns (default: every usable column but the targets and
    `drop`); `categorical` is null (text columns left out), "auto" (text columns) or a list.
    `check_cardinality`: refuse categorical columns with too many values (not for a checkpoint's columns)."""
    if table.frame.empty:
        raise UserError(f"{table.origin} has no data rows: give a table with a header and at least one row.")
    targets = column_names(target, "target")
    if targets is None:
        raise UserError("data.target is not set: name the column to predict (a list for several)")
    check_present(table, targets, "target")
    dropped = column_names(drop, "drop") or []
    check_present(table, dropped, "drop")
    if categorical is not None and categorical != "auto":
        categorical = column_names(categorical, "categorical")
        check_present(table, categorical, "categorical")
    chosen = column_names(features, "features")
    if chosen is None:
        numeric, categories = _default_features(table, [*targets, *dropped], categorical)
    else:
        check_present(table, chosen, "features")
        numeric, categories = _explicit_features(table, chosen, categorical)
    if overlap := sorted(set(numeric + categories) & set(targets)):
        raise UserError(f"data.features lists the target column(s) {overlap}: a model must not see its target")
    if check_cardinality:
        check_categories(table, categories)
    numbers = pd.concat([encode_targets(table, targets), as_numbers(table, numeric)], axis=1)
    numbers = handle_missing(table, numbers, len(targets), drop_na, impute)
    if numbers.empty:
        raise UserError(f"{table.origin}: no rows are left after data.drop_na=true dropped the incomplete ones")
    return TabularData(
        features=numbers[numeric].to_numpy("float32", copy=True).reshape(len(numbers), len(numeric)),
        categories=category_text(table, categories, numbers.index),
        targets=numbers[targets].to_numpy("float32", copy=True),
        feature_names=numeric,
        categorical_names=categories,
        target_names=targets,
        rows=numbers.index,
    )


def select_features(
    table: Table, features: list[str], categorical: list[str], drop_na: bool = False, impute: str | None = None
) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """The trained-on feature columns of new rows (others, the target too, are ignored), missing
    values handled as in training, and the index labels (data rows) of the rows kept."""
    if table.frame.empty:
        raise UserError(f"{table.origin} has no data rows: give a table with a header and at least one row.")
    columns = [str(c) for c in table.frame.columns]
    missing = [name for name in [*features, *categorical] if name not in columns]
    if missing:
        raise UserError(
            f"{table.origin} lacks the feature column(s) {missing} the model was trained on; it needs "
            f"{[*features, *categorical]} (other columns are ignored), and its columns are {columns}."
        )
    numbers = handle_missing(table, as_numbers(table, features), 0, drop_na, impute)
    if numbers.empty:
        raise UserError(f"{table.origin}: no rows are left after data.drop_na=true dropped the incomplete ones")
    values = numbers.to_numpy("float32", copy=True).reshape(len(numbers), len(features))
    return values, category_text(table, categorical, numbers.index), numbers.index
