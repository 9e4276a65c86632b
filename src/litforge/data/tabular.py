from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from litforge.data import tabular_sources
from litforge.data.memory import InMemoryDataModule, TensorSplit, split_indices
from litforge.utils.errors import UserError

SOURCES = ("diabetes", "california", "file")


class TabularDataModule(InMemoryDataModule):
    """Numeric table columns in memory. Missing features are imputed and features standardised
    per batch on the device, with statistics of the training split only; those statistics and
    the column names are the module's state, so a checkpoint carries them."""

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

    def prepare_data(self) -> None:
        if self.hparams.source == "california":
            self._load()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        # names restored from a checkpoint win: the model expects those columns in that order
        data = tabular_sources.select(
            self._load(), self.target_names or hp.target, self.feature_names or hp.features, hp.drop_na, hp.impute
        )
        self.feature_names, self.target_names = data.feature_names, data.target_names
        features, targets = torch.from_numpy(data.features), torch.from_numpy(data.targets)
        split_seed = hp.seed if hp.split_seed is None else hp.split_seed
        parts = split_indices(len(targets), [0, hp.val_fraction, hp.test_fraction], split_seed)
        if min(len(p) for p in parts) < 2:
            raise UserError(
                f"{len(targets)} usable rows are too few for data.val_fraction={hp.val_fraction} and "
                f"data.test_fraction={hp.test_fraction}: every split needs at least 2 rows"
            )
        self.splits = {
            name: TensorSplit(features[p], targets[p]) for name, p in zip(("train", "val", "test"), parts, strict=True)
        }
        if not self.stats:
            self.stats = self._statistics(features[parts[0]], targets[parts[0]])

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

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        features, targets = batch
        stats = {k: v.to(features.device) for k, v in self.stats.items()}
        features = torch.where(features.isnan(), stats["fill"], features)
        return (features - stats["feature_mean"]) / stats["feature_std"], targets

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
