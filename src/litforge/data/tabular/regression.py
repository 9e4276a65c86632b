from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from litforge.data.tabular import sources as tabular_sources
from litforge.data.tabular.base import TableDataModule

SOURCES = ("diabetes", "california", "file")


class TabularDataModule(TableDataModule):
    """Table columns in memory with numeric target(s) (see TableDataModule for the features); the
    targets' mean and standard deviation from the training split go to the model, which predicts in
    the targets' own units.

    `test_path` (a table with the target) is the test split, and validation is cut from the rest.
    With a checkpoint's state loaded, `setup("test")` with `test_path` reads that file alone, and
    `setup("predict")` the rows of `predict_path` (a file, a folder or a glob of table files).
    """

    sources = SOURCES

    def __init__(
        self,
        source: str = "diabetes",
        target: str | Sequence[str] | None = "target",
        categorical: str | Sequence[str] | None = None,
        data_dir: str = "data",
        scale_target: bool = True,
        **common: Any,
    ) -> None:
        super().__init__(source=source, target=target, categorical=categorical, **common)

    def _load(self) -> tabular_sources.Table:
        hp = self.hparams
        if hp.source == "diabetes":
            return tabular_sources.load_diabetes()
        if hp.source == "california":
            return tabular_sources.load_california(hp.data_dir)
        return tabular_sources.load_file(hp.path)

    def _target_statistics(self, targets: Tensor) -> dict[str, Tensor]:
        if self.hparams.scale_target:
            std = targets.std(dim=0)
            return {"target_mean": targets.mean(dim=0), "target_std": torch.where(std > 0, std, 1.0)}
        return {"target_mean": torch.zeros(targets.shape[1]), "target_std": torch.ones(targets.shape[1])}

    def model_kwargs(self) -> dict[str, Any]:
        return {
            **self.input_kwargs(),
            "target_names": list(self.target_names),
            "target_mean": self.stats["target_mean"].tolist(),
            "target_std": self.stats["target_std"].tolist(),
        }
