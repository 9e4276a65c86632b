"""In-memory tensor data batched by index: one gather per batch, no per-sample collate."""

from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from litforge.data.loaders import EpochShuffle, own_generator, resumable_loader
from litforge.utils.errors import UserError


class TensorSplit(Dataset):
    """Aligned tensors of one split; `__getitems__` returns a whole batch with one index op."""

    def __init__(self, *tensors: Tensor) -> None:
        if len({len(t) for t in tensors}) != 1:
            raise ValueError("all tensors of a split need the same first dimension")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)


class PredictInputs(Dataset):
    """Inputs to predict and their ids; a batch is `{"id": [...], "inputs": read(indices)}`, so
    `read` may load its part from files only when the loader asks for it."""

    def __init__(self, ids: Sequence[str], read: Callable[[list[int]], Tensor]) -> None:
        self.ids, self.read = list(ids), read

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        indices = [int(i) for i in indices]
        return {"id": [self.ids[i] for i in indices], "inputs": self.read(indices)}


def as_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The collate function for TensorSplit: the dataset already made the batch."""
    return batch


class InMemoryDataModule(L.LightningDataModule):
    """Train/val/test TensorSplits and their loaders, and the order `setup` reads them in.

    A subclass saves `source`, `test_path` and `predict_path` among its hyperparameters and says how
    to load: `_load` (the source), `_restored` (a checkpoint's state is loaded), `_setup_splits`
    (train/val/test from the source), `_restored_test_split` (all of `test_path`), `_check_training_data`
    and `_predict_inputs`. `setup("predict")` and a restored `setup("test")` with `test_path` read the
    user's files alone, without the training data.
    """

    # the sources `prepare_data` downloads (once per node)
    download_sources: tuple[str, ...] = ()
    # why `setup("predict")` failed without a checkpoint's state
    predict_needs_state = "predicting needs the data state of a checkpoint"

    def __init__(self, batch_size: int = 64, num_workers: int = 0, pin_memory: bool = False, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"data.batch_size={batch_size}: give a batch size of at least 1")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.splits: dict[str, TensorSplit] = {}
        # filled by setup("predict") from the data module's `predict_path`
        self.predict_inputs: PredictInputs | None = None

    def prepare_data(self) -> None:
        # a checkpoint predicting or scoring a test file needs no download
        reads_own_files = self._restored() and (self.hparams.predict_path or self.hparams.test_path)
        if self.hparams.source in self.download_sources and not reads_own_files:
            self._load()

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if self.predict_inputs is None:
                if not self._restored():
                    raise UserError(self.predict_needs_state)
                self.predict_inputs = self._predict_inputs()
            return
        if self.splits:
            return
        if stage == "test" and self._restored():
            if self.hparams.test_path:
                self.splits = {"test": self._restored_test_split()}
                return
            self._check_training_data()
        self._setup_splits()

    def _load(self) -> Any:
        raise NotImplementedError

    def _restored(self) -> bool:
        raise NotImplementedError

    def _setup_splits(self) -> None:
        """Fill `self.splits` (train/val/test) from the source, and the statistics if none were restored."""
        raise NotImplementedError

    def _restored_test_split(self) -> TensorSplit:
        raise NotImplementedError

    def _check_training_data(self) -> None:
        """Eval without `test_path` cuts the test split from the training data: say so if it is gone."""

    def _predict_inputs(self) -> PredictInputs:
        raise NotImplementedError

    def _items_inputs(self, items: list[Any], ids: list[str]) -> PredictInputs:
        """In-memory inputs (images, rows) prepared as `_predict_inputs` prepares files."""
        raise NotImplementedError

    def predict_batch(self, items: Sequence[Any], ids: Sequence[str] | None = None) -> dict[str, Any]:
        """One batch of in-memory inputs, as `predict_dataloader` would give it (before the device
        transfer): `{"id": [...], "inputs": ...}`; ids default to each item's index, "0", "1", ..."""
        if not self._restored():
            raise UserError(self.predict_needs_state)
        items = list(items)
        ids = [str(i) for i in range(len(items))] if ids is None else [str(i) for i in ids]
        inputs = self._items_inputs(items, ids)
        return inputs.__getitems__(range(len(inputs)))

    def predict_schema(self) -> dict[str, Any]:
        """What a predict input must look like, for clients (e.g. the server's /metadata)."""
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        return {
            "collate_fn": as_batch,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
            "generator": own_generator(self.seed),
        }

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.batch_size, **self._options())

    def train_dataloader(self) -> DataLoader:
        sampler = EpochShuffle(len(self.splits["train"]), self.seed)
        return resumable_loader(self.splits["train"], self.batch_size, sampler, self.trainer, **self._options())

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.predict_inputs, batch_size=self.batch_size, **self._options())

    def model_kwargs(self) -> dict[str, Any]:
        """What the task module needs from the data (shapes, class names, scaling)."""
        raise NotImplementedError
