"""Where images come from: scikit-learn's digits, a Hugging Face hub data set, local class folders.

Each loader returns uint8/float images (N, C, H, W) with int64 labels for the splits the source
defines ("train", and "validation" / "test" where it has them), the class names, and where each
split came from (for the log).
"""

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from litforge.data.hub import load_hub_dataset
from litforge.data.memory import TensorSplit
from litforge.utils.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IMAGE_KINDS = "PNG, JPEG, BMP, GIF, TIFF or WebP"
COLOR_MODES = ("L", "RGB", "RGBA")
MODE_OF_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}
# pixel range of a source's images (scikit-learn's digits are 0..16); files are read as 0..255
PIXEL_MAX = {"digits": 16.0}
FILE_PIXEL_MAX = 255.0
# folder names that mean a split, not a class (as in Hugging Face's imagefolder)
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


@dataclass
class ImageData:
    splits: dict[str, TensorSplit]
    class_names: list[str]
    origins: dict[str, str] = field(default_factory=dict)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits and their labels, read from the file it ships: importing
    sklearn.datasets to read it costs about half a second of every default run's start-up."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return digits.images, digits.target


def load_digits() -> ImageData:
    pixels, labels = _digits_arrays()
    images = torch.as_tensor(pixels, dtype=torch.float32).unsqueeze(1)
    split = TensorSplit(images, torch.as_tensor(labels))
    return ImageData({"train": split}, [str(n) for n in range(10)], {"train": "from scikit-learn's digits"})


def _pil_to_tensor(image, size: tuple[int, int] | None, mode: str | None) -> Tensor:
    # palette, 1-bit, 16-bit and CMYK images have no direct uint8 channel layout: read them as RGB
    mode = mode or (image.mode if image.mode in COLOR_MODES else "RGB")
    if image.mode != mode:
        image = image.convert(mode)
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]))
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def load_hub(
    name: str,
    config: str | None,
    cache_dir: str,
    image_column: str,
    label_column: str,
    size: tuple[int, int] | None,
    mode: str | None,
) -> ImageData:
    """A hub image data set (e.g. ylecun/mnist, uoft-cs/cifar10); downloads once into cache_dir."""

    dataset = load_hub_dataset(name, config, cache_dir)
    train = dataset["train"]
    for column in (image_column, label_column):
        if column not in train.column_names:
            raise UserError(
                f"data set {name} has no column {column!r}; its columns are {train.column_names}. "
                "Set data.image_column / data.label_column."
            )
    feature = train.features[label_column]
    class_names = list(getattr(feature, "names", None) or sorted({str(v) for v in train[label_column]}))

    def tensors(split) -> TensorSplit:
        images = torch.stack([_pil_to_tensor(img, size, mode) for img in split[image_column]])
        return TensorSplit(images, torch.as_tensor(split[label_column], dtype=torch.long))

    splits = {role: tensors(dataset[role]) for role in ("train", "test") if role in dataset}
    return ImageData(splits, class_names, {role: f"from {name} [{role}]" for role in splits})


def _class_folders(root: Path, key: str) -> list[str]:
    """The class folders under root; hidden ones (.ipynb_checkpoints, .git) are not classes."""
    if not root.is_dir():
        raise UserError(f"{key}={root}: no such folder. Give a folder with one sub-folder per class.")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise UserError(f"{key}={root} has no class sub-folders: put each class's images in {root}/<class>/.")
    splits = {name: SPLIT_FOLDERS[name.lower()] for name in found if name.lower() in SPLIT_FOLDERS}
    if "train" in splits.values() and len(set(splits.values())) > 1:
        order = sorted(splits, key=lambda name: ["train", "val", "test"].index(splits[name]))
        overrides = " ".join(f"data.{splits[name]}_path={root / name}" for name in order)
        raise UserError(
            f"{key}={root} holds split folders ({', '.join(order)}), not class folders. Point at each "
            f"split's folder of class folders instead of {key}: {overrides}"
        )
    return found


def _read_image(
    file: Path | BinaryIO, size: tuple[int, int] | None, mode: str | None, where: str | None = None
) -> Tensor:
    """An image file (a path or an open binary stream, e.g. uploaded bytes) as a (C, H, W) uint8 tensor."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return _pil_to_tensor(image, size, mode)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        if where is None:
            raise UserError(f"{file}: not a readable image ({err}). Remove it or replace it.") from err
        # PIL names an in-memory stream by its repr, which tells a client nothing
        reason = re.sub(r"\s*<_io\.BytesIO object at \w+>", "", str(err))
        raise UserError(
            f"{where}: not a readable image ({reason}). Give the bytes of an image file ({IMAGE_KINDS})."
        ) from err


def read_class_folders(
    path: str, key: str, size: tuple[int, int] | None, mode: str | None, class_names: list[str] | None = None
) -> tuple[TensorSplit, list[str]]:
    """The images under path/<class>/ and the class names.

    Without `class_names` the folder defines the classes, and each must hold images; with them
    (the training classes) they fix the label order, and a class folder outside them is refused.
    """
    root = Path(path).expanduser()
    found = _class_folders(root, key)
    names = list(class_names or found)
    unknown = [name for name in found if name not in names]
    if unknown:
        raise UserError(
            f"{key}={path}: class folder {root / unknown[0]} is not a class of the training data {names}. "
            "Name class folders as the training classes (a class without a folder is fine here)."
        )
    images, labels = [], []
    for label, name in enumerate(names):
        folder = root / name
        files = [f for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES] if folder.is_dir() else []
        if not files and class_names is None:
            raise UserError(
                f"{key}={path}: class folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "a class needs training images: add some or remove the folder."
            )
        images += [_read_image(f, size, mode) for f in files]
        labels += [label] * len(files)
    if not images:
        raise UserError(f"{key}={path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders.")
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise UserError(
            f"{key}={path}: images have different shapes {sorted(shapes)[:3]}...; set data.image_size=[H,W] "
            f"and data.color_mode (one of {COLOR_MODES}) so they are converted to one shape."
        )
    return TensorSplit(torch.stack(images), torch.as_tensor(labels)), names


def load_folders(
    folders: dict[str, tuple[str, str]],
    size: tuple[int, int] | None,
    mode: str | None,
    class_names: list[str] | None = None,
) -> ImageData:
    """Class folders per split: `folders` maps "train" (required), "validation", "test" to
    (path, config key); the training folder names the classes unless `class_names` is given."""
    path, key = folders["train"]
    train, names = read_class_folders(path, key, size, mode, class_names)
    splits, origins = {"train": train}, {"train": f"from {Path(path).expanduser()}"}
    for role in ("validation", "test"):
        if role in folders:
            path, key = folders[role]
            splits[role] = read_class_folders(path, key, size, mode, names)[0]
            origins[role] = f"from {Path(path).expanduser()}"
    shapes = {role: tuple(split.tensors[0].shape[1:]) for role, split in splits.items()}
    if len(set(shapes.values())) > 1:
        raise UserError(
            f"the splits' images have different shapes {shapes}; set data.image_size=[H,W] and "
            f"data.color_mode (one of {COLOR_MODES}) so they are converted to one shape."
        )
    return ImageData(splits, names, origins)


def _scaled(images: Tensor, pixel_max: float) -> Tensor:
    """0..255 pixels in the training images' range: uint8 kept as is, else scaled floats."""
    return images if pixel_max == FILE_PIXEL_MAX else images.float() * (pixel_max / FILE_PIXEL_MAX)


def read_like_training(
    image: Path | bytes | Any, shape: tuple[int, int, int], pixel_max: float, where: str | None = None
) -> Tensor:
    """One image (a file, an encoded file's bytes or a PIL image) as the training images were: `shape`'s
    channels (C, H, W) and size, their pixel range. `where` names it in the message if it is unreadable."""
    channels, height, width = shape
    size, mode = (height, width), MODE_OF_CHANNELS[channels]
    if isinstance(image, bytes | bytearray):
        pixels = _read_image(io.BytesIO(image), size, mode, where)
    elif isinstance(image, Path | str):
        pixels = _read_image(Path(image), size, mode, where)
    else:
        pixels = _pil_to_tensor(image, size, mode)
    return _scaled(pixels, pixel_max)


def read_labelled_like_training(
    path: str, key: str, shape: tuple[int, int, int], pixel_max: float, class_names: list[str]
) -> TensorSplit:
    """The images under path/<class>/ (classes of `class_names` only) as the training images were."""
    channels, height, width = shape
    split, _ = read_class_folders(path, key, (height, width), MODE_OF_CHANNELS[channels], class_names)
    images, labels = split.tensors
    return TensorSplit(_scaled(images, pixel_max), labels)
