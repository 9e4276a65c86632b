import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from litforge.data.tabular import sources as tabular_sources
from litforge.data.tabular.base import TableDataModule
from litforge.data.tabular.columns import TabularData
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("breast_cancer", "wine", "generated", "file")
# a numeric target with more distinct values than this is a quantity to regress, not classes
MAX_NUMERIC_CLASSES = 50
SPLIT_NAMES = ("training", "validation", "test")


def _label(value: Any) -> str | None:
    """A target cell as a class name; None where missing. 1.0 (an integer column with gaps) is "1"."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class TabularClassificationDataModule(TableDataModule):
    """Table rows and the class of each, from one target column of text or numbers (see TableDataModule
    for the features). The classes are the target's distinct values, sorted (numerically for a
    numeric column): `class_names[i]` is class i, and they are the module's state. A target with
    one class, a class no training row has, or a numeric target of many values is refused.

    `source: generated` is a customer table made from `num_rows` and the split seed, with numeric and
    categorical columns with gaps, an ID and a date column (see sources.load_generated).
    """

    download_sources = ()
    sources = SOURCES

    def __init__(
        self,
        source: str = "breast_cancer",
        target: str = "target",
        categorical: str | Sequence[str] | None = "auto",
        num_rows: int = 1000,
        **common: Any,
    ) -> None:
        if not isinstance(target, str):
            raise UserError(f"data.target={target}: the classifier predicts one column; name it (data.target=<column>)")
        super().__init__(source=source, target=target, categorical=categorical, **common)
        if num_rows < 10:
            raise UserError(f"data.num_rows={num_rows}: give at least 10 rows to generate")
        self.class_names: list[str] | None = None

    def _load(self) -> tabular_sources.Table:
        hp = self.hparams
        if hp.source == "breast_cancer":
            return tabular_sources.load_breast_cancer()
        if hp.source == "wine":
            return tabular_sources.load_wine()
        if hp.source == "generated":
            return tabular_sources.load_generated(hp.num_rows, hp.seed if hp.split_seed is None else hp.split_seed)
        return tabular_sources.load_file(hp.path)

    def _classes(self, table: tabular_sources.Table, name: str, column: pd.Series) -> list[str]:
        values = column[column.map(_label).notna()]
        distinct = pd.unique(values)
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if numeric and len(distinct) > MAX_NUMERIC_CLASSES:
            raise UserError(
                f"target column {name!r} of {table.origin} holds {len(distinct)} distinct numbers "
                f"(e.g. {', '.join(str(v) for v in distinct[:3])}): a quantity to predict, not classes (at most "
                f"{MAX_NUMERIC_CLASSES}). Use regression: model=regressor data=tabular_file data.target={name}."
            )
        if len(distinct) < 2:
            found = f"only the class {_label(distinct[0])!r}" if len(distinct) else "no value"
            raise UserError(
                f"target column {name!r} of {table.origin} has {found} in its labelled rows: a classifier "
                "needs rows of at least two classes. Check data.target names the right column."
            )
        ordered = sorted(distinct) if numeric else sorted({_label(v) for v in distinct})
        return list(dict.fromkeys(_label(v) for v in ordered))

    def _encode_targets(self, table: tabular_sources.Table, names: list[str]) -> pd.DataFrame:
        """The class index of each row (NaN where the target is missing)."""
        name = names[0]
        column = table.frame[name]
        if self.class_names is None:
            self.class_names = self._classes(table, name, column)
        index = {label: i for i, label in enumerate(self.class_names)}
        codes = np.full(len(column), np.nan)
        for i, (row, value) in enumerate(column.items()):
            label = _label(value)
            if label is None:
                continue
            if label not in index:
                raise UserError(
                    f"target column {name!r} of {table.origin}: {table.row(row)} holds the class {label!r}, "
                    f"which the model was not trained on; its classes are {self.class_names}."
                )
            codes[i] = index[label]
        return pd.DataFrame({name: codes}, index=column.index)

    def _targets(self, values: np.ndarray) -> Tensor:
        return torch.from_numpy(values[:, 0]).long()

    def _check_split(self, data: TabularData, parts: list[np.ndarray], table: tabular_sources.Table) -> None:
        trained = set(data.targets[parts[0], 0].tolist())
        for split, rows in zip(SPLIT_NAMES[1:], parts[1:], strict=False):
            for position in rows:
                code = float(data.targets[position, 0])
                if code not in trained:
                    count = int((data.targets[:, 0] == code).sum())
                    raise UserError(
                        f"class {self.class_names[int(code)]!r} of target column {self.target_names[0]!r} "
                        f"({table.origin}) is only in the {split} split ({table.row(data.rows[position])}; "
                        f"{count} row(s) in all): no training row has it, so no model can learn it. Add rows "
                        "of it, merge it into another class, or remove it."
                    )

    def model_kwargs(self) -> dict[str, Any]:
        counts = torch.bincount(self.splits["train"].tensors[-1], minlength=len(self.class_names))
        return {**self.input_kwargs(), "class_names": list(self.class_names), "class_counts": counts.tolist()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "class_names": self.class_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.class_names = state.pop("class_names")
        super().load_state_dict(state)
