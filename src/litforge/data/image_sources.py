"""Where images come from: scikit-learn's digits, a Hugging Face hub data set, a local folder.

Each loader returns uint8/float images (N, C, H, W), int64 labels, the class names, and
optionally a predefined test split.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from litforge.data.hub import load_hub_dataset
from litforge.utils.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class ImageData:
    images: Tensor
    labels: Tensor
    class_names: list[str]
    test_images: Tensor | None = None
    test_labels: Tensor | None = None


def load_digits() -> ImageData:
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    return ImageData(images, torch.as_tensor(digits.target), [str(n) for n in digits.target_names])


def _pil_to_tensor(image, size: tuple[int, int] | None, mode: str | None) -> Tensor:
    if mode is not None and image.mode != mode:
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

    def tensors(split) -> tuple[Tensor, Tensor]:
        images = torch.stack([_pil_to_tensor(img, size, mode) for img in split[image_column]])
        return images, torch.as_tensor(split[label_column], dtype=torch.long)

    images, labels = tensors(train)
    data = ImageData(images, labels, class_names)
    if "test" in dataset:
        data.test_images, data.test_labels = tensors(dataset["test"])
    return data


def load_folder(
    path: str, size: tuple[int, int] | None, mode: str | None, class_names: list[str] | None = None
) -> ImageData:
    """An image folder with one sub-folder per class; `class_names` fixes the label order."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"data.path={path}: no such folder. Give a folder with one sub-folder per class.")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    names = list(class_names or found)
    if not names:
        raise UserError(f"data.path={path} has no class sub-folders: put each class's images in root/<class>/.")
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise UserError(f"{root}: class folders {unknown} are not among the trained classes {names}.")
    images, labels = [], []
    for label, name in enumerate(names):
        for file in sorted((root / name).iterdir()) if (root / name).is_dir() else []:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as image:
                    tensor = _pil_to_tensor(image, size, mode)
            except (UnidentifiedImageError, OSError) as err:
                raise UserError(f"{file}: not a readable image ({err}). Remove it or replace it.") from err
            images.append(tensor)
            labels.append(label)
    if not images:
        raise UserError(f"data.path={path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders.")
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise UserError(
            f"{root}: images have different shapes {sorted(shapes)[:3]}...; set data.image_size=[H,W] "
            "and data.color_mode=L or RGB so they are resized to one shape."
        )
    return ImageData(torch.stack(images), torch.as_tensor(labels), names)
