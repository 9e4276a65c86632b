"""Tables the tabular data modules read: scikit-learn's bundled sets, a generated one, the user's files."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from litforge.utils.config import require_file
from litforge.utils.errors import UserError

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


class RequestRows(Table):
    """In-memory rows (e.g. of an HTTP request), named in messages by their index: rows[3]."""

    def row(self, label: int) -> str:
        return f"rows[{label}]"


def rows_table(items: list[Any], columns: list[str]) -> Table:
    """Rows given as {column: value} dicts (null: a missing value; other keys ignored) as a table;
    each must name every one of `columns`."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UserError(f"rows[{i}]: give an object of column values, e.g. {dict.fromkeys(columns[:3], 1.0)}")
        missing = [name for name in columns if name not in item]
        if missing:
            raise UserError(
                f"rows[{i}] lacks the column(s) {missing}; each row needs {columns} (null for a missing value; "
                "other keys are ignored)."
            )
    return RequestRows(pd.DataFrame.from_records(items, index=range(len(items))), "rows")


def load_diabetes() -> Table:
    """scikit-learn's bundled diabetes set in its original units (not sklearn's pre-scaled copy)."""
    from sklearn.datasets import load_diabetes as load

    return Table(load(scaled=False, as_frame=True).frame, "the diabetes data set")


def _labelled(bunch, origin: str) -> Table:
    """A bundled classification set with its class names in the target column."""
    frame = bunch.frame.copy()
    frame["target"] = np.asarray(bunch.target_names)[bunch.target]
    return Table(frame, origin)


def load_breast_cancer() -> Table:
    """scikit-learn's bundled breast cancer set: 569 tumours, 30 features, malignant or benign."""
    from sklearn.datasets import load_breast_cancer as load

    return _labelled(load(as_frame=True), "the breast cancer data set")


def load_wine() -> Table:
    """scikit-learn's bundled wine set: 178 wines, 13 features, three cultivars."""
    from sklearn.datasets import load_wine as load

    return _labelled(load(as_frame=True), "the wine data set")


def load_generated(rows: int, seed: int) -> Table:
    """A customer table, the same for the same `rows` and `seed`: numeric and text columns with gaps,
    an ID and a date column (no features), and whether the customer left (`churned`, Yes/No)."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows).astype(object)
    payment = rng.choice(["card", "bank", "cash"], rows, p=[0.5, 0.3, 0.2])
    tenure = rng.integers(1, 72, rows).astype(float)
    charge = rng.normal(60, 20, rows).clip(15, 130).round(2) + np.select([plan == "plus", plan == "premium"], [15, 35])
    calls = rng.poisson(1.5, rows).astype(float)
    logit = (
        -0.5
        + 1.2 * (plan == "basic")
        - 0.05 * tenure
        + 0.03 * (charge - 70)
        + 0.6 * calls
        + np.select([region == "south", region == "west"], [0.8, -0.6])
        + 0.9 * (payment == "cash")
    )
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    # gaps: in the numbers, and a region some customers never gave
    tenure[rng.random(rows) < 0.05] = np.nan
    charge[rng.random(rows) < 0.05] = np.nan
    region[rng.random(rows) < 0.08] = None
    start = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, rows), unit="D")
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + rows),
            "signup_date": start.strftime("%Y-%m-%d"),
            "plan": plan,
            "region": region,
            "payment": payment,
            "tenure_months": tenure,
            "monthly_charge": charge,
            "support_calls": calls,
            "churned": churned,
        }
    )
    return Table(frame, f"the generated customer table ({rows} rows, seed {seed})")


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
