import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from litforge.data.image import sources as image_sources
from litforge.data.image.augment import random_crop, random_hflip, random_resized_crop
from litforge.data.inputs import expand_inputs
from litforge.data.memory import InMemoryDataModule, PredictInputs, TensorSplit
from litforge.data.splits import carve_missing_splits
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("digits", "hub", "folder")
# how many classes the log lists one by one
LOGGED_CLASSES = 20


def _check_folders(
    source: str, path: str | None, train_path: str | None, val_path: str | None, test_path: str | None
) -> None:
    folders = {"path": path, "train_path": train_path, "val_path": val_path}
    given = [f"data.{key}" for key, value in folders.items() if value]
    if source != "folder":
        if given:
            raise UserError(f"{', '.join(given)}: local folders are read with data.source=folder (data=image_folder)")
        return
    if path and train_path:
        raise UserError(
            f"data.path={path} and data.train_path={train_path}: give one; they are the same folder (the "
            "training images, from which a split without data.val_path / data.test_path is cut)."
        )
    if not path and not train_path:
        raise UserError(
            "data=image_folder needs your images: data.path=<folder with one sub-folder per class>, or "
            "data.train_path=<folder> (+ optional data.val_path, data.test_path) for a train/val/test layout."
        )


def _log_splits(splits: dict[str, TensorSplit], class_names: list[str], origins: dict[str, str]) -> None:
    """Which images went where: a count and origin per split, then counts per class."""
    roles = {"train": "train", "val": "validation", "test": "test"}
    for split, role in roles.items():
        log.info("%s split: %d images %s", split, len(splits[split]), origins[role])
    counts = {s: torch.bincount(splits[s].tensors[1], minlength=len(class_names)).tolist() for s in roles}
    per_class = [f"{name} {'/'.join(str(counts[s][i]) for s in roles)}" for i, name in enumerate(class_names)]
    more = len(per_class) - LOGGED_CLASSES
    log.info(
        "%d classes, images per class (train/val/test): %s%s",
        len(class_names),
        ", ".join(per_class[:LOGGED_CLASSES]),
        f", ... ({more} more)" if more > 0 else "",
    )


def _read_batch(files: list[Path], shape: tuple[int, int, int], pixel_max: float, indices: list[int]) -> Tensor:
    return torch.stack([image_sources.read_like_training(files[i], shape, pixel_max) for i in indices])


def _plain_scale(scale: Sequence[float] | None) -> list[float] | None:
    """[min, max] area fractions of the random resized crop, plain floats."""
    if scale is None:
        return None
    values = list(scale) if isinstance(scale, Sequence) and not isinstance(scale, str) else []
    if len(values) != 2 or not all(isinstance(v, int | float) for v in values) or not 0 < values[0] <= values[1] <= 1:
        raise UserError(f"data.crop_scale={scale!r}: give [min, max] fractions of the image area, e.g. [0.6, 1.0]")
    return [float(v) for v in values]


def _plain_classes(classes: Sequence[str | int] | None) -> list[str] | None:
    """The class names to keep, as strings (digits' classes are named "0".."9")."""
    if classes is None:
        return None
    names = [str(c) for c in classes] if isinstance(classes, Sequence) and not isinstance(classes, str) else []
    if len(names) < 2 or len(set(names)) != len(names):
        raise UserError(f"data.classes={classes!r}: give at least two different class names, e.g. [cat, dog], or null")
    return names


def select_classes(data: image_sources.ImageData, classes: list[str]) -> None:
    """Keep only `classes` in every split, relabelled in their order."""
    unknown = [name for name in classes if name not in data.class_names]
    if unknown:
        raise UserError(f"data.classes: {unknown[0]!r} is not a class of the data; its classes are {data.class_names}")
    mapping = torch.full((len(data.class_names),), -1, dtype=torch.long)
    mapping[torch.tensor([data.class_names.index(name) for name in classes])] = torch.arange(len(classes))
    for role, split in data.splits.items():
        images, labels = split.tensors
        relabelled = mapping[labels]
        keep = relabelled >= 0
        data.splits[role] = TensorSplit(images[keep], relabelled[keep])
    data.class_names = list(classes)


def take_per_class(split: TensorSplit, per_class: int, num_classes: int, seed: int) -> TensorSplit:
    """At most `per_class` images of each class, drawn at random (seeded), in their original order."""
    labels = split.tensors[1]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    keep = torch.cat([order[labels[order] == c][:per_class] for c in range(num_classes)]).sort().values
    return TensorSplit(*(t[keep] for t in split.tensors))


def _plain_size(image_size: Sequence[int] | None) -> list[int] | None:
    """[H, W] as plain ints: the value goes into checkpoints, which are read weights-only."""
    if image_size is None:
        return None
    size = list(image_size) if isinstance(image_size, Sequence) and not isinstance(image_size, str) else []
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise UserError(f"data.image_size={image_size!r}: give [height, width] in pixels, e.g. data.image_size=[32,32]")
    return [int(s) for s in size]


class ImageDataModule(InMemoryDataModule):
    """Images in memory; per-channel normalisation from the training split, augmentation on
    the training split only, both applied per batch on the device.

    Local images (`source: folder`): `path` (or its synonym `train_path`) is a folder of class
    folders; `val_path`/`test_path` are folders of the same classes, and a split without one is
    cut from the training images by `val_fraction`/`test_fraction`.

    With the state of a checkpoint loaded, `setup("test")` with `test_path` reads that folder alone
    (any source), and `setup("predict")` the images `predict_path` names (a file, a folder, a glob),
    each converted to the training images' shape, channels and pixel range.
    """

    download_sources = ("hub",)
    predict_needs_state = (
        "predicting images needs the normalisation statistics and image shape a checkpoint stores; "
        "none are loaded (no checkpoint, or one written before litforge stored the image shape: "
        "retrain it). Use python -m litforge.predict ckpt_path=<file.ckpt> input=<images>."
    )

    def __init__(
        self,
        source: str = "digits",
        name: str | None = None,
        config_name: str | None = None,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        data_dir: str = "data",
        image_column: str = "image",
        label_column: str = "label",
        image_size: Sequence[int] | None = None,
        color_mode: str | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        crop_padding: int = 0,
        crop_scale: Sequence[float] | None = None,
        hflip: bool = False,
        classes: Sequence[str | int] | None = None,
        per_class: int | None = None,
        seed: int = 42,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        predict_path: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, seed)
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {SOURCES}")
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise UserError(
                f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: each in [0, 1) "
                "and together below 1, so some data is left to train on"
            )
        if color_mode not in (None, *image_sources.COLOR_MODES):
            raise UserError(f"data.color_mode={color_mode!r}: give one of {image_sources.COLOR_MODES} or null")
        _check_folders(source, path, train_path, val_path, test_path)
        # save_hyperparameters records the arguments' current values: the plain list, not a ListConfig
        image_size = _plain_size(image_size)
        crop_scale = _plain_scale(crop_scale)
        classes = _plain_classes(classes)
        if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
            raise UserError(f"data.per_class={per_class!r}: give how many training images to keep per class, or null")
        self.save_hyperparameters()
        self.class_names: list[str] | None = None
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        # (C, H, W) and pixel range of the training images: what new images are converted to
        self.image_shape: list[int] | None = None
        self.pixel_max = image_sources.PIXEL_MAX.get(source, image_sources.FILE_PIXEL_MAX)

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
        folders = {"train": (hp.path, "data.path")} if hp.path else {"train": (hp.train_path, "data.train_path")}
        for role, key in (("validation", "val_path"), ("test", "test_path")):
            if hp[key]:
                folders[role] = (hp[key], f"data.{key}")
        # restored class names are the selected ones: the folders' classes are read in full, then selected
        known = None if hp.classes else self.class_names
        return image_sources.load_folders(folders, size, hp.color_mode, known)

    def _restored(self) -> bool:
        """Whether a checkpoint's state is loaded, so new images can be read without the training data."""
        return self.mean is not None and self.image_shape is not None

    def _carve(self, data: image_sources.ImageData) -> dict[str, TensorSplit]:
        """The source's splits, with validation and test cut from training where it has none (seeded)."""
        hp = self.hparams
        for role, key, fraction in (("validation", "val", hp.val_fraction), ("test", "test", hp.test_fraction)):
            if role not in data.splits and fraction == 0:
                folder = f", or give data.{key}_path" if hp.source == "folder" else ""
                raise UserError(f"no {role} split: set data.{key}_fraction in (0, 1){folder}")
            if role not in data.splits:
                data.origins[role] = f"cut from the training images (data.{key}_fraction={fraction}, seed {hp.seed})"
        return carve_missing_splits(
            dict(data.splits),
            hp.val_fraction,
            hp.test_fraction,
            hp.seed,
            take=lambda s, i: TensorSplit(*(t[i] for t in s.tensors)),
        )

    def _setup_splits(self) -> None:
        data = self._load()
        if self.hparams.classes:
            select_classes(data, self.hparams.classes)
        self.class_names = self.class_names or data.class_names
        self.image_shape = self.image_shape or list(data.splits["train"].tensors[0].shape[1:])
        if self.hparams.test_path and self.hparams.source != "folder":
            data.splits["test"] = self._read_test_folder()
            data.origins["test"] = f"from {Path(self.hparams.test_path).expanduser()}"
        splits = self._carve(data)
        train = splits["train"]
        if self.hparams.per_class:
            train = take_per_class(train, self.hparams.per_class, len(self.class_names), self.hparams.seed)
            data.origins["train"] += f", {self.hparams.per_class} per class at most (data.per_class)"
        self.splits = {"train": train, "val": splits["validation"], "test": splits["test"]}
        _log_splits(self.splits, self.class_names, data.origins)
        if self.mean is None:
            pixels = self.splits["train"].tensors[0].float().transpose(0, 1).flatten(1)
            self.mean, self.std = pixels.mean(dim=1), pixels.std(dim=1).clamp_min(1e-6)

    def _read_test_folder(self) -> TensorSplit:
        shape = tuple(self.image_shape)
        return image_sources.read_labelled_like_training(
            self.hparams.test_path, "data.test_path", shape, self.pixel_max, self.class_names
        )

    def _restored_test_split(self) -> TensorSplit:
        """All of data.test_path: a checkpoint scored on new labelled images."""
        split = self._read_test_folder()
        counts = torch.bincount(split.tensors[1], minlength=len(self.class_names)).tolist()
        log.info("test split: %d images from %s", len(split), Path(self.hparams.test_path).expanduser())
        per_class = ", ".join(f"{name} {count}" for name, count in zip(self.class_names, counts, strict=True))
        log.info("images per class: %s", per_class)
        return split

    def _check_training_data(self) -> None:
        hp = self.hparams
        key, folder = ("data.path", hp.path) if hp.path else ("data.train_path", hp.train_path)
        if hp.source == "folder" and folder and not Path(folder).expanduser().is_dir():
            raise UserError(
                f"{key}={folder}: the training folder of this checkpoint is gone, and the test split is cut "
                "from it (data.test_fraction). Score other labelled images with data.test_path=<folder of "
                f"class folders>, or give the folder's new place with {key}=<folder>."
            )

    def _predict_inputs(self) -> PredictInputs:
        files = expand_inputs(self.hparams.predict_path, image_sources.IMAGE_SUFFIXES, "image")
        channels, height, width = self.image_shape
        read = partial(_read_batch, files, (channels, height, width), self.pixel_max)
        mode = image_sources.MODE_OF_CHANNELS[channels]
        log.info("%d images to predict, each converted to %s %dx%d", len(files), mode, height, width)
        return PredictInputs([str(f) for f in files], read)

    def _items_inputs(self, items: list[Any], ids: list[str]) -> PredictInputs:
        shape = tuple(self.image_shape)
        images = [
            image_sources.read_like_training(item, shape, self.pixel_max, f"images[{i}]")
            for i, item in enumerate(items)
        ]
        return PredictInputs(ids, lambda indices: torch.stack([images[i] for i in indices]))

    def predict_schema(self) -> dict[str, Any]:
        channels, height, width = self.image_shape
        return {"mode": image_sources.MODE_OF_CHANNELS[channels], "height": height, "width": width}

    def _normalise(self, images: Tensor) -> Tensor:
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            return {**batch, "inputs": self._normalise(batch["inputs"].float())}
        images, labels = batch
        images = images.float()
        if self.trainer is not None and self.trainer.training:
            if self.hparams.crop_padding:
                images = random_crop(images, self.hparams.crop_padding)
            if self.hparams.crop_scale:
                images = random_resized_crop(images, self.hparams.crop_scale)
            if self.hparams.hflip:
                images = random_hflip(images)
        return self._normalise(images), labels

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.splits["train"].tensors[0].shape[1:]),
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            # how the batches were standardised, for a backbone whose preprocessing starts from pixels
            "pixel_scaling": {
                "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "max": float(self.pixel_max),
            },
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "class_names": list(self.class_names or []),
            "image_shape": self.image_shape,
            "pixel_max": self.pixel_max,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.std, self.class_names = state["mean"], state["std"], state["class_names"]
        # older checkpoints lack the shape: they are evaluated from the training data as before
        self.image_shape = state.get("image_shape")
        self.pixel_max = state.get("pixel_max", self.pixel_max)
