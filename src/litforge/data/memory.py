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
    """Train/val/test TensorSplits and their loaders; subclasses fill the splits in `setup`."""

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
