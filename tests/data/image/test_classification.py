import io
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from litforge.assembly import instantiate_datamodule
from litforge.data.image.augment import random_crop, random_hflip, random_resized_crop
from litforge.data.image.classification import ImageDataModule
from litforge.utils.errors import UserError
from tests.helpers import compose_config


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
    kwargs = dm.model_kwargs()
    assert kwargs.pop("pixel_scaling") == {"mean": dm.mean.tolist(), "std": dm.std.tolist(), "max": 255.0}
    assert kwargs == {"input_shape": [1, 8, 8], "num_classes": 2, "class_names": ["cat", "dog"]}
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


def _solid(mode: str, size: tuple[int, int], value) -> Image.Image:
    if mode == "P":
        image = Image.new("P", size, 0)
        image.putpalette([*value, *([0] * 765)])
        return image
    return Image.new(mode, size, value)


@pytest.mark.parametrize(
    ("color_mode", "expected"),
    [("RGB", [[200, 10, 10], [90, 90, 90], [10, 200, 10], [10, 10, 200]]), ("L", [[67], [90], [122], [33]])],
)
def test_mixed_sizes_and_modes_become_one_shape_and_mode(color_mode: str, expected: list, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _solid("P", (9, 5), (200, 10, 10)).save(tmp_path / "a" / "0_palette.png")
    _solid("L", (30, 20), 90).save(tmp_path / "a" / "1_gray.png")
    _solid("RGBA", (7, 7), (10, 200, 10, 128)).save(tmp_path / "b" / "0_rgba.png")
    _solid("RGB", (16, 12), (10, 10, 200)).save(tmp_path / "b" / "1_rgb.jpg", quality=100)
    dm = ImageDataModule(source="folder", train_path=str(tmp_path), image_size=[6, 4], color_mode=color_mode)
    images = dm._load().splits["train"].tensors[0]
    assert images.shape == (4, len(expected[0]), 6, 4) and images.dtype == torch.uint8
    centre = images[:, :, 3, 2].tolist()
    for got, want in zip(centre, expected, strict=True):
        assert all(abs(g - w) <= 3 for g, w in zip(got, want, strict=True)), (centre, expected)


def _write_splits(root: Path, counts: dict[str, dict[str, int]]) -> None:
    for split, classes in counts.items():
        _write_folder(root / split, classes, size=(6, 6))


def test_split_folders_are_used_as_they_are_and_share_the_training_classes(tmp_path: Path) -> None:
    _write_splits(tmp_path, {"train": {"cat": 5, "dog": 4}, "val": {"dog": 2}, "test": {"cat": 3, "dog": 1}})
    dm = _setup(
        source="folder",
        train_path=str(tmp_path / "train"),
        val_path=str(tmp_path / "val"),
        test_path=str(tmp_path / "test"),
        image_size=[6, 6],
    )
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 9, "val": 2, "test": 4}
    assert dm.class_names == ["cat", "dog"]
    assert dm.splits["val"].tensors[1].tolist() == [1, 1]
    assert dm.splits["test"].tensors[1].tolist() == [0, 0, 0, 1]


def test_a_split_without_a_folder_is_cut_from_training(tmp_path: Path) -> None:
    _write_splits(tmp_path, {"train": {"cat": 10, "dog": 10}, "test": {"cat": 3, "dog": 3}})
    kwargs = {"source": "folder", "train_path": str(tmp_path / "train"), "test_path": str(tmp_path / "test")}
    dm = _setup(**kwargs, val_fraction=0.25, seed=3)
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 15, "val": 5, "test": 6}
    assert torch.equal(
        _setup(**kwargs, val_fraction=0.25, seed=3).splits["val"].tensors[0], dm.splits["val"].tensors[0]
    )
    with pytest.raises(UserError, match="data.val_fraction in \\(0, 1\\), or give data.val_path"):
        _setup(**kwargs, val_fraction=0.0)
    synonym = _setup(**{**kwargs, "train_path": None, "path": kwargs["train_path"]}, val_fraction=0.25, seed=3)
    assert torch.equal(synonym.splits["val"].tensors[0], dm.splits["val"].tensors[0])


@pytest.mark.parametrize(
    ("counts", "keys", "message"),
    [
        (
            {"train": {"cat": 2}, "val": {"cat": 1, "dog": 1}},
            ["train", "val"],
            r"class folder \S+/val/dog is not a class",
        ),
        ({"train": {"cat": 2, "dog": 0}}, ["train"], r"class folder \S+/train/dog holds no images"),
        ({"train": {"cat": 2}, "val": {"cat": 1}}, ["path"], "holds split folders"),
        ({"train": {"cat": 2}}, [], "needs your images"),
        ({"train": {"cat": 2}}, ["path", "train"], "give one"),
    ],
)
def test_split_folder_mistakes_are_named(counts: dict, keys: list[str], message: str, tmp_path: Path) -> None:
    _write_splits(tmp_path, counts)
    paths = {"path": tmp_path, "train": tmp_path / "train", "val": tmp_path / "val"}
    kwargs = {"path" if key == "path" else f"{key}_path": str(paths[key]) for key in keys}
    with pytest.raises(UserError, match=message):
        _setup(source="folder", **kwargs)


def test_a_tree_of_split_folders_is_answered_with_the_overrides_to_use(tmp_path: Path) -> None:
    _write_splits(tmp_path, {"train": {"cat": 2}, "validation": {"cat": 1}, "test": {"cat": 1}})
    with pytest.raises(UserError) as err:
        _setup(source="folder", path=str(tmp_path))
    for split, folder in [("train", "train"), ("val", "validation"), ("test", "test")]:
        assert f"data.{split}_path={tmp_path / folder}" in str(err.value)


def test_hyperparameters_and_state_are_plain_values_a_weights_only_load_reads(tmp_path: Path) -> None:
    _write_folder(tmp_path / "images", {"cat": 4, "dog": 4})
    cfg = compose_config(["data=image_folder", f"data.path={tmp_path / 'images'}", "data.image_size=[8,8]"])
    dm = instantiate_datamodule(cfg.data)
    dm.setup("fit")
    assert type(dm.hparams.image_size) is list
    assert type(ImageDataModule(image_size=OmegaConf.create([8, 8])).hparams.image_size) is list
    saved = {"hparams": dict(dm.hparams), "state": dm.state_dict(), "model": dm.model_kwargs()}
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["hparams"]["image_size"] == [8, 8] and loaded["model"]["class_names"] == ["cat", "dog"]


@pytest.mark.network
def test_mnist_from_the_hub(tmp_path: Path) -> None:
    dm = _setup(source="hub", name="ylecun/mnist", data_dir=str(tmp_path), color_mode="L", test_fraction=0.0)
    assert dm.model_kwargs()["input_shape"] == [1, 28, 28]
    assert len(dm.splits["test"]) == 10000


def test_random_resized_crop_keeps_the_size_and_the_whole_box_is_the_image() -> None:
    images = torch.rand(4, 3, 8, 8)
    assert torch.allclose(random_resized_crop(images, [1.0, 1.0], ratio=(1.0, 1.0)), images, atol=1e-5)
    cropped = random_resized_crop(images, [0.2, 0.5])
    assert cropped.shape == images.shape and not torch.allclose(cropped, images)
    # a crop of a constant image is that constant: the box stays inside the image
    assert torch.allclose(random_resized_crop(torch.full((3, 1, 8, 8), 0.7), [0.1, 0.9]), torch.tensor(0.7))


def test_classes_and_per_class_pick_a_few_labelled_images_of_some_classes() -> None:
    dm = _setup(classes=[7, 5, 6], per_class=4, seed=3)
    assert dm.class_names == ["7", "5", "6"]
    assert torch.bincount(dm.splits["train"].tensors[1]).tolist() == [4, 4, 4]
    # validation and test keep all their images of those classes, relabelled in the given order
    full = _setup(seed=3)
    selected = sum(int((split.tensors[1] == d).sum()) for split in full.splits.values() for d in (7, 5, 6))
    for split in ("val", "test"):
        labels = dm.splits[split].tensors[1]
        assert set(labels.tolist()) == {0, 1, 2} and abs(len(labels) - 0.15 * selected) <= 1
    assert dm.model_kwargs()["num_classes"] == 3
    assert (
        _setup(classes=[7, 5, 6], per_class=4, seed=3).splits["train"].tensors[0].equal(dm.splits["train"].tensors[0])
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"classes": [5, 11]}, "'11' is not a class of the data"),
        ({"classes": [5]}, "data.classes=\\[5\\]: give at least two"),
        ({"per_class": 0}, "data.per_class=0"),
        ({"crop_scale": [0.5, 1.5]}, "data.crop_scale="),
    ],
)
def test_bad_class_picks_and_crop_scales_are_refused(option: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        _setup(**option)
