from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from litforge.data import image_sources
from litforge.data.memory import InMemoryDataModule, TensorSplit, split_indices
from litforge.utils.errors import UserError

SOURCES = ("digits", "hub", "folder")


def random_crop(images: Tensor, padding: int) -> Tensor:
    """Pad each image by `padding` and cut it back at a random offset (one gather per batch)."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, [padding] * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=images.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=images.device)
    rows = (torch.arange(height, device=images.device).view(1, -1, 1) + dy).expand(n, height, width)
    cols = (torch.arange(width, device=images.device).view(1, 1, -1) + dx).expand(n, height, width)
    batch = torch.arange(n, device=images.device).view(-1, 1, 1)
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def random_hflip(images: Tensor) -> Tensor:
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


class ImageDataModule(InMemoryDataModule):
    """Images in memory; per-channel normalisation from the training split, augmentation on
    the training split only, both applied per batch on the device."""

    def __init__(
        self,
        source: str = "digits",
        name: str | None = None,
        config_name: str | None = None,
        path: str | None = None,
        data_dir: str = "data",
        image_column: str = "image",
        label_column: str = "label",
        image_size: Sequence[int] | None = None,
        color_mode: str | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        crop_padding: int = 0,
        hflip: bool = False,
        seed: int = 42,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, seed)
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {SOURCES}")
        if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise UserError(
                f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: each in [0, 1) "
                "and together below 1, so some data is left to train on"
            )
        self.save_hyperparameters()
        self.class_names: list[str] | None = None
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    def _load(self) -> image_sources.ImageData:
        hp = self.hparams
        size = tuple(hp.image_size) if hp.image_size else None
        if hp.source == "digits":
            return image_sources.load_digits()
        if hp.source == "hub":
            if not hp.name:
                raise UserError("data.source=hub needs data.name, a hub id such as ylecun/mnist")
            return image_sources.load_hub(
                hp.name, hp.config_name, hp.data_dir, hp.image_column, hp.label_column, size, hp.color_mode
            )
        return image_sources.load_folder(hp.path, size, hp.color_mode, self.class_names)

    def prepare_data(self) -> None:
        if self.hparams.source == "hub":
            self._load()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        data = self._load()
        self.class_names = self.class_names or data.class_names
        hp = self.hparams
        if data.test_images is None:
            train, val, test = split_indices(len(data.labels), [0, hp.val_fraction, hp.test_fraction], hp.seed)
            test_images, test_labels = data.images[test], data.labels[test]
        else:
            fraction = hp.val_fraction / (1 - hp.test_fraction) if hp.test_fraction else hp.val_fraction
            train, val = split_indices(len(data.labels), [0, fraction], hp.seed)
            test_images, test_labels = data.test_images, data.test_labels
        self.splits = {
            "train": TensorSplit(data.images[train], data.labels[train]),
            "val": TensorSplit(data.images[val], data.labels[val]),
            "test": TensorSplit(test_images, test_labels),
        }
        if self.mean is None:
            pixels = data.images[train].float().transpose(0, 1).flatten(1)
            self.mean, self.std = pixels.mean(dim=1), pixels.std(dim=1).clamp_min(1e-6)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        images = images.float()
        if self.trainer is not None and self.trainer.training:
            if self.hparams.crop_padding:
                images = random_crop(images, self.hparams.crop_padding)
            if self.hparams.hflip:
                images = random_hflip(images)
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1), labels

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.splits["train"].tensors[0].shape[1:]),
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "class_names": self.class_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.std, self.class_names = state["mean"], state["std"], state["class_names"]
