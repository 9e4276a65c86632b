from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litforge.data.image import ImageDataModule, random_crop, random_hflip
from litforge.utils.errors import UserError


def _setup(**kwargs) -> ImageDataModule:
    dm = ImageDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_digits_splits_are_disjoint_and_reproducible_from_the_seed() -> None:
    a, b, c = _setup(seed=1), _setup(seed=1), _setup(seed=2)
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sizes == {"train": 1257, "val": 270, "test": 270}
    for split in a.splits:
        assert torch.equal(a.splits[split].tensors[0], b.splits[split].tensors[0])
    assert not torch.equal(a.splits["test"].tensors[0], c.splits["test"].tensors[0])
    train_rows = {tuple(x.flatten().tolist()) for x in a.splits["train"].tensors[0]}
    test_rows = [tuple(x.flatten().tolist()) for x in a.splits["test"].tensors[0]]
    assert sum(r in train_rows for r in test_rows) < 10  # digits holds a few duplicate images, no more


def test_normalisation_statistics_come_from_the_training_split_only() -> None:
    dm = _setup()
    train = dm.splits["train"].tensors[0]
    everything = torch.cat([s.tensors[0] for s in dm.splits.values()])
    assert torch.allclose(dm.mean, train.mean().view(1))
    assert not torch.allclose(dm.mean, everything.mean().view(1), atol=1e-4)
    batch = dm.on_after_batch_transfer((train, torch.zeros(len(train))), 0)[0]
    assert batch.mean().abs() < 1e-4 and (batch.std() - 1).abs() < 1e-3


def test_batches_are_gathered_by_index_in_one_piece() -> None:
    dm = _setup(batch_size=32)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 8, 8) and labels.shape == (32,)
    assert len(dm.val_dataloader()) == 9


def test_augmentation_keeps_shape_and_content() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    cropped = random_crop(images, padding=1)
    assert cropped.shape == images.shape
    assert torch.equal(random_crop(images, padding=0), images)
    flipped = random_hflip(images)
    for k in range(2):
        assert torch.equal(flipped[k], images[k]) or torch.equal(flipped[k], images[k].flip(-1))


def _write_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (10, 12)) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder_reads_classes_resizes_and_keeps_class_order(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"cat": 6, "dog": 8})
    dm = _setup(
        source="folder", path=str(tmp_path), image_size=[8, 8], color_mode="L", val_fraction=0.2, test_fraction=0.2
    )
    assert dm.model_kwargs() == {"input_shape": [1, 8, 8], "num_classes": 2, "class_names": ["cat", "dog"]}
    assert sum(len(s) for s in dm.splits.values()) == 14
    again = ImageDataModule(source="folder", path=str(tmp_path), image_size=[8, 8], color_mode="L")
    again.load_state_dict({**dm.state_dict(), "class_names": ["dog", "cat"]})
    again.setup("test")
    assert again.class_names == ["dog", "cat"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "no such folder"),
        (lambda root: root.mkdir(), "no class sub-folders"),
        (lambda root: (root / "cat").mkdir(parents=True), "no images"),
        (
            lambda root: ((root / "cat").mkdir(parents=True), (root / "cat" / "x.png").write_text("no")),
            "not a readable",
        ),
    ],
)
def test_image_folder_mistakes_are_named(make, message: str, tmp_path: Path) -> None:
    root = tmp_path / "images"
    make(root)
    with pytest.raises(UserError, match=message):
        _setup(source="folder", path=str(root))


def test_mixed_image_shapes_ask_for_image_size(tmp_path: Path) -> None:
    _write_folder(tmp_path / "a", {"x": 2}, size=(8, 8))
    _write_folder(tmp_path / "b", {"y": 2}, size=(9, 9))
    for sub in ["x", "y"]:
        (tmp_path / "a" / sub).mkdir(exist_ok=True)
    for f in (tmp_path / "b" / "y").iterdir():
        f.rename(tmp_path / "a" / "y" / f.name)
    with pytest.raises(UserError, match="data.image_size"):
        _setup(source="folder", path=str(tmp_path / "a"))


@pytest.mark.network
def test_mnist_from_the_hub(tmp_path: Path) -> None:
    dm = _setup(source="hub", name="ylecun/mnist", data_dir=str(tmp_path), color_mode="L", test_fraction=0.0)
    assert dm.model_kwargs()["input_shape"] == [1, 28, 28]
    assert len(dm.splits["test"]) == 10000
