"""Tables the tabular data module reads, and the checks that turn one into float arrays."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from litforge.utils.config import require_file
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

IMPUTE = ("mean", "median")
FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass
class Table:
    """A frame whose index labels are the 0-based data rows of its source."""

    frame: pd.DataFrame
    origin: str
    # file line of data row 0 (the header is line 1 of a CSV); None where rows have no lines
    first_line: int | None = None

    def row(self, label: int) -> str:
        return f"data row {label + 1}" if self.first_line is None else f"line {label + self.first_line} of the file"


@dataclass
class TabularData:
    """Float32 arrays, one row per example; features may hold NaN where imputation was asked for."""

    features: np.ndarray
    targets: np.ndarray
    feature_names: list[str]
    target_names: list[str]


def load_diabetes() -> Table:
    """scikit-learn's bundled diabetes set in its original units (not sklearn's pre-scaled copy)."""
    from sklearn.datasets import load_diabetes as load

    return Table(load(scaled=False, as_frame=True).frame, "the diabetes data set")


def load_california(data_dir: str) -> Table:
    from sklearn.datasets import fetch_california_housing

    try:
        bunch = fetch_california_housing(data_home=data_dir, as_frame=True)
    except OSError as err:
        raise UserError(
            f"could not fetch California housing into data.data_dir={data_dir} ({type(err).__name__}: {err}). "
            "It needs internet once, then reads the cached copy; offline, use data=diabetes."
        ) from err
    return Table(bunch.frame, "the California housing data set")


def load_file(path: str | None, key: str = "data.path") -> Table:
    """A CSV/TSV or parquet file; blank CSV lines are skipped, keeping every row's line number.
    `key` is the config key that named the file, for the messages."""
    file = require_file(path, "data file", key)
    suffix = file.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise UserError(f"{key}={path}: unknown file type {suffix!r}. Give a file ending in {FILE_SUFFIXES}.")
    try:
        if suffix in (".parquet", ".pq"):
            return Table(pd.read_parquet(file).reset_index(drop=True), f"{key}={path}")
        frame = pd.read_csv(file, sep="\t" if suffix == ".tsv" else ",", skip_blank_lines=False)
    except pd.errors.EmptyDataError as err:
        raise UserError(f"{key}={path}: the file is empty. Give a header line and at least one data row.") from err
    except (ValueError, OSError) as err:
        raise UserError(f"{key}={path}: not a readable {suffix[1:]} file ({err}).") from err
    return Table(frame.dropna(how="all"), f"{key}={path}", first_line=2)


def _column_names(names: str | Sequence[str] | None, key: str) -> list[str] | None:
    if names is None:
        return None
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    if not names:
        raise UserError(f"data.{key}=[]: name at least one column")
    return names


def _check_present(table: Table, names: list[str], key: str) -> None:
    columns = [str(c) for c in table.frame.columns]
    for name in names:
        if name not in columns:
            raise UserError(
                f"data.{key}: no column {name!r} in {table.origin}; its columns are {columns}. "
                f"Set data.{key} to column names of the table."
            )


def _default_features(table: Table, targets: list[str]) -> list[str]:
    """Every numeric column but the targets; a text column with some numbers in it is kept, so
    that its stray non-number is reported rather than the column silently dropped."""
    features, text = [], []
    for name, column in table.frame.items():
        if name in targets:
            continue
        numeric = pd.api.types.is_numeric_dtype(column) or pd.to_numeric(column, errors="coerce").notna().any()
        (features if numeric else text).append(str(name))
    if text:
        log.info("left out non-numeric columns %s; list the features in data.features to choose", text)
    if not features:
        raise UserError(f"{table.origin} has no numeric column besides the target {targets}: set data.features.")
    return features


def _as_numbers(table: Table, columns: list[str]) -> pd.DataFrame:
    numbers = {}
    for name in columns:
        column = table.frame[name]
        values = pd.to_numeric(column, errors="coerce") if not pd.api.types.is_bool_dtype(column) else column
        wrong = values.isna() & column.notna()
        if wrong.any():
            label = wrong.idxmax()
            raise UserError(
                f"column {name!r} of {table.origin} is not numeric: {table.row(label)} holds {column[label]!r}. "
                "Fix that value, or leave the column out by listing numeric columns in data.features."
            )
        numbers[name] = values.astype("float64")
    return pd.DataFrame(numbers, index=table.frame.index)


def _handle_missing(
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


def select(
    table: Table,
    target: str | Sequence[str],
    features: Sequence[str] | None,
    drop_na: bool = False,
    impute: str | None = None,
) -> TabularData:
    """The target column(s) and feature columns (default: every numeric column but the targets)."""
    if table.frame.empty:
        raise UserError(f"{table.origin} has no data rows: give a table with a header and at least one row.")
    targets = _column_names(target, "target")
    if targets is None:
        raise UserError("data.target is not set: name the column to predict (a list for several)")
    _check_present(table, targets, "target")
    chosen = _column_names(features, "features")
    if chosen is None:
        chosen = _default_features(table, targets)
    _check_present(table, chosen, "features")
    if overlap := sorted(set(chosen) & set(targets)):
        raise UserError(f"data.features lists the target column(s) {overlap}: a model must not see its target")
    numbers = _handle_missing(table, _as_numbers(table, [*targets, *chosen]), len(targets), drop_na, impute)
    if numbers.empty:
        raise UserError(f"{table.origin}: no rows are left after data.drop_na=true dropped the incomplete ones")
    return TabularData(
        features=numbers[chosen].to_numpy("float32", copy=True),
        targets=numbers[targets].to_numpy("float32", copy=True),
        feature_names=chosen,
        target_names=targets,
    )


def select_features(
    table: Table, features: list[str], drop_na: bool = False, impute: str | None = None
) -> tuple[np.ndarray, pd.Index]:
    """The trained-on feature columns of new rows (others, the target too, are ignored), missing
    values handled as in training, and the index labels (data rows) of the rows kept."""
    if table.frame.empty:
        raise UserError(f"{table.origin} has no data rows: give a table with a header and at least one row.")
    columns = [str(c) for c in table.frame.columns]
    missing = [name for name in features if name not in columns]
    if missing:
        raise UserError(
            f"{table.origin} lacks the feature column(s) {missing} the model was trained on; it needs "
            f"{features} (other columns are ignored), and its columns are {columns}."
        )
    numbers = _handle_missing(table, _as_numbers(table, features), 0, drop_na, impute)
    if numbers.empty:
        raise UserError(f"{table.origin}: no rows are left after data.drop_na=true dropped the incomplete ones")
    return numbers.to_numpy("float32", copy=True), numbers.index
