import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from litforge.data.inputs import expand_inputs
from litforge.data.memory import InMemoryDataModule, PredictInputs, TensorSplit
from litforge.data.splits import split_indices
from litforge.data.tabular import sources as tabular_sources
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("diabetes", "california", "file")


def _rows(features: Tensor, indices: list[int]) -> Tensor:
    return features[indices]


class TabularDataModule(InMemoryDataModule):
    """Numeric table columns in memory. Missing features are imputed and features standardised
    per batch on the device, with statistics of the training split only; those statistics and
    the column names are the module's state, so a checkpoint carries them.

    `test_path` (a table with the target) is the test split, and validation is cut from the rest.
    With a checkpoint's state loaded, `setup("test")` with `test_path` reads that file alone, and
    `setup("predict")` the rows of `predict_path` (a file, a folder or a glob of table files).
    """

    download_sources = ("california",)
    predict_needs_state = (
        "predicting rows needs the data state of a checkpoint (columns, scaling): "
        "use python -m litforge.predict ckpt_path=<file.ckpt> input=<table file>"
    )

    def __init__(
        self,
        source: str = "diabetes",
        path: str | None = None,
        target: str | Sequence[str] | None = "target",
        features: Sequence[str] | None = None,
        data_dir: str = "data",
        drop_na: bool = False,
        impute: str | None = None,
        scale_features: bool = True,
        scale_target: bool = True,
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
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {SOURCES}")
        if impute not in (None, *tabular_sources.IMPUTE):
            raise UserError(f"data.impute={impute!r}: give null or one of {tabular_sources.IMPUTE}")
        if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise UserError(
                f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: each in (0, 1) "
                "and together below 1, so some data is left to train on"
            )
        # plain lists, not ListConfigs: the hyperparameters go into checkpoints read weights-only
        target = target if target is None or isinstance(target, str) else list(target)
        features = None if features is None else list(features)
        self.save_hyperparameters()
        self.feature_names: list[str] | None = None
        self.target_names: list[str] | None = None
        self.stats: dict[str, Tensor] = {}

    def _load(self) -> tabular_sources.Table:
        hp = self.hparams
        if hp.source == "diabetes":
            return tabular_sources.load_diabetes()
        if hp.source == "california":
            return tabular_sources.load_california(hp.data_dir)
        return tabular_sources.load_file(hp.path)

    def _restored(self) -> bool:
        """Whether a checkpoint's state is loaded, so new rows can be read without the training data."""
        return bool(self.stats) and self.feature_names is not None

    def _select(self, table: tabular_sources.Table) -> tuple[Tensor, Tensor]:
        hp = self.hparams
        # names restored from a checkpoint win: the model expects those columns in that order
        data = tabular_sources.select(
            table, self.target_names or hp.target, self.feature_names or hp.features, hp.drop_na, hp.impute
        )
        self.feature_names, self.target_names = data.feature_names, data.target_names
        return torch.from_numpy(data.features), torch.from_numpy(data.targets)

    def _setup_splits(self) -> None:
        hp = self.hparams
        features, targets = self._select(self._load())
        split_seed = hp.seed if hp.split_seed is None else hp.split_seed
        # a test file is the test split: only validation is cut from the rest
        fractions = [0, hp.val_fraction] + ([] if hp.test_path else [hp.test_fraction])
        parts = split_indices(len(targets), fractions, split_seed)
        if min(len(p) for p in parts) < 2:
            raise UserError(
                f"{len(targets)} usable rows are too few for data.val_fraction={hp.val_fraction} and "
                f"data.test_fraction={hp.test_fraction}: every split needs at least 2 rows"
            )
        names = ("train", "val", "test")[: len(parts)]
        self.splits = {name: TensorSplit(features[p], targets[p]) for name, p in zip(names, parts, strict=True)}
        if hp.test_path:
            self.splits["test"] = self._test_file()
        log.info(
            "rows per split (train/val/test): %s", "/".join(str(len(self.splits[n])) for n in ("train", "val", "test"))
        )
        if not self.stats:
            self.stats = self._statistics(features[parts[0]], targets[parts[0]])

    def _test_file(self) -> TensorSplit:
        return TensorSplit(*self._select(tabular_sources.load_file(self.hparams.test_path, "data.test_path")))

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

    def _predict_inputs(self) -> PredictInputs:
        hp = self.hparams
        files = expand_inputs(hp.predict_path, tabular_sources.FILE_SUFFIXES, "table file (CSV/TSV/parquet)")
        ids, parts = [], []
        for file in files:
            table = tabular_sources.load_file(str(file), "input")
            features, rows = tabular_sources.select_features(table, self.feature_names, hp.drop_na, hp.impute)
            names = self._row_ids(table, rows)
            ids += [f"{file}:{name}" for name in names] if len(files) > 1 else names
            parts.append(torch.from_numpy(features))
        log.info("%d rows to predict from %d file(s)", len(ids), len(files))
        return PredictInputs(ids, partial(_rows, torch.cat(parts)))

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

    def _statistics(self, features: Tensor, targets: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        fill = features.nanmedian(dim=0).values if hp.impute == "median" else features.nanmean(dim=0)
        if fill.isnan().any():
            name = self.feature_names[int(fill.isnan().nonzero()[0])]
            raise UserError(f"feature {name!r} has no value in the training split to impute from: leave it out")
        features = torch.where(features.isnan(), fill, features)
        stats = {"fill": fill}
        for key, values, scale in (("feature", features, hp.scale_features), ("target", targets, hp.scale_target)):
            if scale:
                std = values.std(dim=0)
                # a constant column keeps its values rather than being divided by zero
                stats[f"{key}_mean"], stats[f"{key}_std"] = values.mean(dim=0), torch.where(std > 0, std, 1.0)
            else:
                stats[f"{key}_mean"], stats[f"{key}_std"] = torch.zeros(values.shape[1]), torch.ones(values.shape[1])
        return stats

    def _standardise(self, features: Tensor) -> Tensor:
        stats = {k: v.to(features.device) for k, v in self.stats.items()}
        features = torch.where(features.isnan(), stats["fill"], features)
        return (features - stats["feature_mean"]) / stats["feature_std"]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            return {**batch, "inputs": self._standardise(batch["inputs"])}
        features, targets = batch
        return self._standardise(features), targets

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "target_names": list(self.target_names),
            "target_mean": self.stats["target_mean"].tolist(),
            "target_std": self.stats["target_std"].tolist(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"feature_names": self.feature_names, "target_names": self.target_names, **self.stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.feature_names, self.target_names = state.pop("feature_names"), state.pop("target_names")
        self.stats = state
