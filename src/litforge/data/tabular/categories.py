"""Categorical columns as integer codes: 0 = missing, 1 = unknown (not seen in training), 2.. = the
training split's categories in sorted order; and the checks that keep a column learnable."""

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

MISSING, UNKNOWN = 0, 1
RESERVED = ("<missing>", "<unknown>")
# a column with more distinct values than this share of its rows has categories seen about once:
# nothing to learn from them
MAX_CATEGORY_SHARE = 0.5
# how many values a date check parses
DATE_SAMPLE = 200


def too_many_categories(column: pd.Series) -> bool:
    values = column.dropna()
    return len(values) > 1 and values.astype(str).nunique() > MAX_CATEGORY_SHARE * len(column)


def is_date_like(column: pd.Series) -> bool:
    """Text that mostly parses as dates or times (and holds a digit: "Monday" alone is a category)."""
    values = column.dropna().astype(str).head(DATE_SAMPLE)
    if values.empty or not values.str.contains(r"\d").mean() > 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.9)


def check_categories(table, names: Sequence[str]) -> None:
    """Refuse a chosen categorical column with more distinct values than its rows allow."""
    for name in names:
        column = table.frame[name]
        if too_many_categories(column):
            raise UserError(
                f"categorical column {name!r} of {table.origin} has {column.dropna().astype(str).nunique()} "
                f"distinct values in {len(column)} rows (e.g. {column.dropna().iloc[0]!r}): at most "
                f"{int(MAX_CATEGORY_SHARE * len(column))} can be learned from so few rows. Leave it out with "
                f"data.drop=[{name}] (an ID or free text is no category)."
            )


def vocabularies(values: np.ndarray) -> list[list[str]]:
    """Each column's categories (rows of `values`, None: missing), sorted: code 2 is the first."""
    return [sorted({v for v in values[:, j] if v is not None}) for j in range(values.shape[1])]


def cardinalities(vocabs: Sequence[Sequence[str]]) -> list[int]:
    return [len(vocab) + len(RESERVED) for vocab in vocabs]


def encode(values: np.ndarray, vocabs: Sequence[Sequence[str]], names: Sequence[str], where: str) -> np.ndarray:
    """int64 codes of `values` (one column per vocabulary); values not in a vocabulary are unknown,
    counted in a log line naming `where` they came from."""
    codes = np.full(values.shape, MISSING, dtype=np.int64)
    for j, vocab in enumerate(vocabs):
        index = {category: code for code, category in enumerate(vocab, start=len(RESERVED))}
        unseen: dict[str, int] = {}
        for i, value in enumerate(values[:, j]):
            if value is None:
                continue
            code = index.get(value, UNKNOWN)
            codes[i, j] = code
            if code == UNKNOWN:
                unseen[value] = unseen.get(value, 0) + 1
        if unseen:
            shown = sorted(unseen)[:5]
            log.info(
                "%s: %d value(s) of column %r not seen in training, read as unknown: %s%s",
                where,
                sum(unseen.values()),
                names[j],
                shown,
                " ..." if len(unseen) > len(shown) else "",
            )
    return codes


def code_names(name: str, vocab: Sequence[str]) -> list[str]:
    """The one-hot input names of a column, in code order."""
    return [f"{name}={category}" for category in (*RESERVED, *vocab)]
