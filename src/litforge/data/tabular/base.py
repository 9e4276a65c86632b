"""What the tabular data modules share: columns chosen and checked, categorical codes, missing values,
feature scaling from the training split, the state a checkpoint carries, rows to predict."""

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from litforge.data.inputs import expand_inputs
from litforge.data.memory import InMemoryDataModule, PredictInputs, TensorSplit
from litforge.data.splits import split_indices
from litforge.data.tabular import categories, columns
from litforge.data.tabular import sources as tabular_sources
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

ENCODINGS = ("onehot", "embedding")
STATE_NAMES = ("feature_names", "target_names", "categorical_names", "vocabularies", "indicators")


def _rows(tensors: tuple[Tensor, ...], indices: list[int]) -> tuple[Tensor, ...]:
    return tuple(t[indices] for t in tensors)


class TableDataModule(InMemoryDataModule):
    """Table columns in memory: numeric features (missing ones imputed, optionally flagged by a
    missing-indicator input, then standardised per batch on the device) and categorical columns as
    codes (see data/tabular/categories.py), one-hot columns or embedding indices for the net. The
    statistics, column names and vocabularies come from the training split and are the module's
    state, so a checkpoint carries them.

    A batch is `(x, y)`, or `(x, x_cat, y)` with categorical embeddings; a predict batch's "inputs"
    is `(x,)` or `(x, x_cat)`. The constructor takes and checks the config keys both tables have and
    saves them with the subclass's own as hyperparameters: a subclass lists its own keys (and
    `source`, `target`, `categorical`, whose defaults differ by task), hands the rest on as `**common`,
    and says how targets are read (`_encode_targets`) and scaled or counted.
    """

    download_sources = ("california",)
    predict_needs_state = (
        "predicting rows needs the data state of a checkpoint (columns, scaling): "
        "use python -m litforge.predict ckpt_path=<file.ckpt> input=<table file>"
    )
    sources: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        source: str,
        target: str | Sequence[str] | None,
        categorical: str | Sequence[str] | None,
        path: str | None = None,
        features: Sequence[str] | None = None,
        categorical_encoding: str = "onehot",
        drop: Sequence[str] | None = None,
        missing_indicator: bool = False,
        drop_na: bool = False,
        impute: str | None = None,
        scale_features: bool = True,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 42,
        split_seed: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        test_path: str | None = None,
        predict_path: str | None = None,
        id_column: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, seed)
        # Lightning collects the arguments of this constructor and of the subclass's that called it
        self.save_hyperparameters()
        # plain lists, not ListConfigs: the hyperparameters go into checkpoints read weights-only
        for key in ("target", "features", "categorical", "drop"):
            value = self.hparams[key]
            self.hparams[key] = value if value is None or isinstance(value, str) else list(value)
        self._check_options()
        self.feature_names: list[str] | None = None
        self.target_names: list[str] | None = None
        self.categorical_names: list[str] = []
        self.vocabularies: list[list[str]] = []
        # the numeric columns (by index) that get a missing-indicator input
        self.indicators: list[int] = []
        self.stats: dict[str, Tensor] = {}
        # the source table's data rows (index labels) in each split cut from it, for baselines on the same rows
        self.split_rows: dict[str, list[int]] | None = None

    def _check_options(self) -> None:
        hp = self.hparams
        if hp.source not in self.sources:
            raise UserError(f"data.source={hp.source!r} is not one of {self.sources}")
        if hp.impute not in (None, *tabular_sources.IMPUTE):
            raise UserError(f"data.impute={hp.impute!r}: give null or one of {tabular_sources.IMPUTE}")
        if hp.categorical_encoding not in ENCODINGS:
            raise UserError(f"data.categorical_encoding={hp.categorical_encoding!r}: give one of {ENCODINGS}")
        if hp.missing_indicator and hp.impute is None:
            raise UserError(
                "data.missing_indicator=true marks imputed values, but data.impute is null: "
                "set data.impute=mean (or median)"
            )
        if isinstance(hp.categorical, str) and hp.categorical != "auto":
            raise UserError(f"data.categorical={hp.categorical!r}: give null, auto or a list of column names")
        if not 0 < hp.val_fraction < 1 or not 0 < hp.test_fraction < 1 or hp.val_fraction + hp.test_fraction >= 1:
            raise UserError(
                f"data.val_fraction={hp.val_fraction}, data.test_fraction={hp.test_fraction}: each in (0, 1) "
                "and together below 1, so some data is left to train on"
            )

    def _load(self) -> tabular_sources.Table:
        raise NotImplementedError

    def _encode_targets(self, table: tabular_sources.Table, names: list[str]) -> pd.DataFrame:
        """The target column(s) as floats, NaN where missing."""
        return columns.as_numbers(table, names)

    def _targets(self, values: np.ndarray) -> Tensor:
        return torch.from_numpy(values)

    def _check_split(self, data: columns.TabularData, parts: list[np.ndarray], table: tabular_sources.Table) -> None:
        """Refuse a split no model could learn from (e.g. a class absent from training)."""

    def _target_statistics(self, targets: Tensor) -> dict[str, Tensor]:
        return {}

    def _restored(self) -> bool:
        """Whether a checkpoint's state is loaded, so new rows can be read without the training data."""
        return bool(self.stats) and self.feature_names is not None

    def _select(self, table: tabular_sources.Table) -> columns.TabularData:
        hp = self.hparams
        restored = self.feature_names is not None
        # names restored from a checkpoint win: the model expects those columns in that order
        data = columns.select(
            table,
            self.target_names or hp.target,
            [*self.feature_names, *self.categorical_names] if restored else hp.features,
            hp.drop_na,
            hp.impute,
            categorical=(self.categorical_names or None) if restored else hp.categorical,
            drop=None if restored else hp.drop,
            encode_targets=self._encode_targets,
            check_cardinality=not restored,
        )
        self.feature_names, self.target_names = data.feature_names, data.target_names
        self.categorical_names = data.categorical_names
        return data

    def _split(self, data: columns.TabularData, rows: Any, where: str) -> TensorSplit:
        features, targets = torch.from_numpy(data.features[rows]), self._targets(data.targets[rows])
        if not self.categorical_names:
            return TensorSplit(features, targets)
        codes = categories.encode(data.categories[rows], self.vocabularies, self.categorical_names, where)
        return TensorSplit(features, torch.from_numpy(codes), targets)

    def _setup_splits(self) -> None:
        hp = self.hparams
        table = self._load()
        data = self._select(table)
        split_seed = hp.seed if hp.split_seed is None else hp.split_seed
        # a test file is the test split: only validation is cut from the rest
        fractions = [0, hp.val_fraction] + ([] if hp.test_path else [hp.test_fraction])
        parts = [p.numpy() for p in split_indices(len(data.targets), fractions, split_seed)]
        if min(len(p) for p in parts) < 2:
            raise UserError(
                f"{len(data.targets)} usable rows are too few for data.val_fraction={hp.val_fraction} and "
                f"data.test_fraction={hp.test_fraction}: every split needs at least 2 rows"
            )
        self._check_split(data, parts, table)
        if not self.stats:
            self.vocabularies = categories.vocabularies(data.categories[parts[0]])
            self.stats = self._statistics(torch.from_numpy(data.features[parts[0]]))
            self.stats |= self._target_statistics(self._targets(data.targets[parts[0]]))
        names = ("train", "val", "test")[: len(parts)]
        self.splits = {name: self._split(data, p, f"{name} split") for name, p in zip(names, parts, strict=True)}
        self.split_rows = {name: data.rows[p].tolist() for name, p in zip(names, parts, strict=True)}
        if hp.test_path:
            self.splits["test"] = self._test_file()
        log.info(
            "rows per split (train/val/test): %s", "/".join(str(len(self.splits[n])) for n in ("train", "val", "test"))
        )

    def _test_file(self) -> TensorSplit:
        table = tabular_sources.load_file(self.hparams.test_path, "data.test_path")
        return self._split(self._select(table), slice(None), table.origin)

    def _restored_test_split(self) -> TensorSplit:
        split = self._test_file()
        log.info("test split: %d rows from data.test_path=%s", len(split), self.hparams.test_path)
        return split

    def _check_training_data(self) -> None:
        path = self.hparams.path
        if self.hparams.source == "file" and path and not Path(path).expanduser().is_file():
            raise UserError(
                f"data.path={path}: the training file of this checkpoint is gone, and the test split is cut "
                "from it (data.test_fraction). Score other labelled rows with data.test_path=<file with the "
                "target column>, or give the file's new place with data.path=<file>."
            )

    def _encoded_rows(self, table: tabular_sources.Table) -> tuple[pd.Index, tuple[Tensor, ...]]:
        """The kept rows of new data (index labels) and their raw columns: `(x,)` or `(x, codes)`."""
        hp = self.hparams
        features, text, rows = columns.select_features(
            table, self.feature_names, self.categorical_names, hp.drop_na, hp.impute
        )
        if not self.categorical_names:
            return rows, (torch.from_numpy(features),)
        coded = categories.encode(text, self.vocabularies, self.categorical_names, table.origin)
        return rows, (torch.from_numpy(features), torch.from_numpy(coded))

    def _predict_inputs(self) -> PredictInputs:
        hp = self.hparams
        files = expand_inputs(hp.predict_path, tabular_sources.FILE_SUFFIXES, "table file (CSV/TSV/parquet)")
        ids, parts = [], []
        for file in files:
            table = tabular_sources.load_file(str(file), "input")
            rows, tensors = self._encoded_rows(table)
            names = self._row_ids(table, rows)
            ids += [f"{file}:{name}" for name in names] if len(files) > 1 else names
            parts.append(tensors)
        log.info("%d rows to predict from %d file(s)", len(ids), len(files))
        return PredictInputs(ids, partial(_rows, tuple(torch.cat(column) for column in zip(*parts, strict=True))))

    def _items_inputs(self, items: list[Any], ids: list[str]) -> PredictInputs:
        """Rows given as {column: value} dicts, read as a table's rows are; every row is answered, so one
        that data.drop_na would drop is refused instead."""
        table = tabular_sources.rows_table(items, [*self.feature_names, *self.categorical_names])
        rows, tensors = self._encoded_rows(table)
        if len(rows) < len(items):
            dropped = next(i for i in range(len(items)) if i not in set(rows))
            raise UserError(
                f"rows[{dropped}] has a missing or infinite value in {self.feature_names}, and this model drops such "
                "rows (data.drop_na=true): give every feature column a number."
            )
        return PredictInputs(ids, partial(_rows, tensors))

    def predict_schema(self) -> dict[str, Any]:
        """The columns a row needs: numeric features, and categorical ones with their known values."""
        numbers = {name: {"type": "number"} for name in self.feature_names}
        known = zip(self.categorical_names, self.vocabularies, strict=True)
        texts = {name: {"type": "category", "values": list(vocab)} for name, vocab in known}
        return {"columns": numbers | texts, "missing": "imputed" if self.hparams.impute else "refused"}

    def _row_ids(self, table: tabular_sources.Table, rows: Any) -> list[str]:
        """Each kept row's data.id_column value, or its data row number (0: the first under the header)."""
        column = self.hparams.id_column
        if column is None:
            return [str(row) for row in rows]
        if column not in table.frame.columns:
            raise UserError(
                f"data.id_column={column}: no such column in {table.origin}; its columns are "
                f"{[str(c) for c in table.frame.columns]}."
            )
        return table.frame.loc[rows, column].astype(str).tolist()

    def _statistics(self, features: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        if features.shape[1] == 0:
            fill = torch.zeros(0)
        else:
            fill = features.nanmedian(dim=0).values if hp.impute == "median" else features.nanmean(dim=0)
        if fill.isnan().any():
            name = self.feature_names[int(fill.isnan().nonzero()[0])]
            raise UserError(f"feature {name!r} has no value in the training split to impute from: leave it out")
        self.indicators = [int(j) for j in features.isnan().any(dim=0).nonzero()] if hp.missing_indicator else []
        if self.indicators:
            log.info("missing-indicator inputs for %s", [self.feature_names[j] for j in self.indicators])
        features = torch.where(features.isnan(), fill, features)
        stats = {"fill": fill}
        if hp.scale_features:
            std = features.std(dim=0)
            # a constant column keeps its values rather than being divided by zero
            stats["feature_mean"], stats["feature_std"] = features.mean(dim=0), torch.where(std > 0, std, 1.0)
        else:
            stats["feature_mean"], stats["feature_std"] = torch.zeros(features.shape[1]), torch.ones(features.shape[1])
        return stats

    def _inputs(self, features: Tensor, codes: Tensor | None = None) -> tuple[Tensor, ...]:
        """The net's inputs from a batch's raw columns: `(x,)`, or `(x, x_cat)` with embeddings."""
        stats = {k: self.stats[k].to(features.device) for k in ("fill", "feature_mean", "feature_std")}
        missing = features.isnan()
        parts = [(torch.where(missing, stats["fill"], features) - stats["feature_mean"]) / stats["feature_std"]]
        if self.indicators:
            parts.append(missing[:, self.indicators].to(features.dtype))
        if codes is not None and self.hparams.categorical_encoding == "onehot":
            sizes = categories.cardinalities(self.vocabularies)
            parts += [torch.nn.functional.one_hot(codes[:, j], n).to(features.dtype) for j, n in enumerate(sizes)]
            codes = None
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return (x,) if codes is None else (x, codes)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            return {**batch, "inputs": self._inputs(*batch["inputs"])}
        *inputs, targets = batch
        return (*self._inputs(*inputs), targets)

    def input_kwargs(self) -> dict[str, Any]:
        """The net's input columns by name (`feature_names`), and with embeddings `cardinalities`."""
        names = [*self.feature_names, *(f"{self.feature_names[j]} missing" for j in self.indicators)]
        if not self.categorical_names:
            return {"feature_names": names}
        if self.hparams.categorical_encoding == "onehot":
            pairs = zip(self.categorical_names, self.vocabularies, strict=True)
            return {"feature_names": names + [n for name, vocab in pairs for n in categories.code_names(name, vocab)]}
        return {"feature_names": names, "cardinalities": categories.cardinalities(self.vocabularies)}

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in STATE_NAMES} | self.stats

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.feature_names, self.target_names = state.pop("feature_names"), state.pop("target_names")
        # checkpoints from before categorical columns have none of these
        self.categorical_names = state.pop("categorical_names", [])
        self.vocabularies = state.pop("vocabularies", [])
        self.indicators = state.pop("indicators", [])
        self.stats = state
