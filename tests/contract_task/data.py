"""Rows of digits from a CSV (`digits`: space-separated, `total`: their sum), in memory."""

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

from litforge.utils.errors import UserError


def read_rows(path: str, length: int | None = None) -> tuple[list[str], torch.Tensor, torch.Tensor | None]:
    """Row ids, the digits (rows x length) and the totals (None in a file without them)."""
    with open(Path(path).expanduser(), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    digits = [[float(d) for d in row["digits"].split()] for row in rows]
    length = length or len(digits[0])
    for i, row in enumerate(digits):
        if len(row) != length:
            raise UserError(f"{path}, row {i + 1}: {len(row)} digits, but the model reads rows of {length}")
    totals = torch.tensor([float(row["total"]) for row in rows]) if rows and "total" in rows[0] else None
    return [str(i) for i in range(len(rows))], torch.tensor(digits), totals


class PredictRows(Dataset):
    def __init__(self, ids: list[str], digits: torch.Tensor) -> None:
        self.ids, self.digits = ids, digits

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": self.ids[index], "inputs": self.digits[index]}


class DigitSumData(L.LightningDataModule):
    """Train/val/test cut from `path`; `predict_path` (a CSV without `total`) for litforge.predict.
    The row length is the state a checkpoint carries."""

    def __init__(
        self,
        path: str,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        batch_size: int = 16,
        seed: int = 0,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.length: int | None = None
        self.splits: dict[str, Dataset] = {}
        self.predict_rows: PredictRows | None = None

    def prepare_data(self) -> None:
        """Nothing to download."""

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage == "predict":
            ids, digits, _ = read_rows(hp.predict_path, self.length)
            self.predict_rows = PredictRows(ids, digits)
            return
        if self.splits:
            return
        _, digits, totals = read_rows(hp.path, self.length)
        self.length = digits.shape[1]
        sizes = [hp.val_fraction, hp.test_fraction]
        parts = random_split(
            TensorDataset(digits, totals),
            [1 - sum(sizes), *sizes],
            generator=torch.Generator().manual_seed(hp.seed),
        )
        self.splits = dict(zip(("train", "val", "test"), parts, strict=True))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.hparams.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.predict_rows, batch_size=self.hparams.batch_size)

    def model_kwargs(self) -> dict[str, Any]:
        return {"length": self.length}

    def state_dict(self) -> dict[str, Any]:
        return {"length": self.length}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.length = state["length"]
