"""A user's own PNG folders through the command line: both layouts train, test, log their splits
and evaluate from the checkpoint; layout mistakes are refused with the fix."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

CLASSES = ("left", "top", "diagonal")
TINY = [*QUIET, "data=image_folder", "data.image_size=[16,16]", "data.batch_size=8", "trainer.max_epochs=2"]


def _picture(kind: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A noisy picture whose bright part says its class, whatever its size."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    bright = {"left": cols < width / 2, "top": rows < height / 2, "diagonal": abs(rows / height - cols / width) < 0.2}
    return np.clip(bright[kind] * 180 + rng.integers(0, 60, size), 0, 255).astype(np.uint8)


def write_images(root: Path, per_class: int, seed: int, classes: tuple[str, ...] = CLASSES) -> int:
    """PNGs of mixed sizes, half grayscale and half RGB, in root/<class>/; returns how many."""
    rng = np.random.default_rng(seed)
    for kind in classes:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            gray = _picture(kind, (int(rng.integers(14, 40)), int(rng.integers(14, 40))), rng)
            image = Image.fromarray(gray) if i % 2 else Image.fromarray(np.stack([gray] * 3, axis=-1))
            image.save(root / kind / f"{i:03d}.png")
    return per_class * len(classes)


def split_counts(log: str) -> dict[str, int]:
    return {split: int(n) for split, n in re.findall(r"(train|val|test) split: (\d+) images", log)}


def only_run(log_dir: Path, task: str = "train") -> Path:
    (run,) = run_dirs(log_dir, task)
    return run


def assert_checkpoints_load_weights_only(log_dir: Path) -> None:
    checkpoints = list(log_dir.rglob("*.ckpt"))
    assert checkpoints
    for path in checkpoints:
        torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def one_folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("one_folder")
    total = write_images(root / "pictures", per_class=12, seed=0)
    proc = run_cli("litforge.train", [*TINY, f"data.path={root / 'pictures'}"], root / "logs")
    return root / "logs", total, proc


def test_one_folder_of_class_folders_trains_tests_and_logs_its_splits(one_folder_run) -> None:
    log_dir, total, proc = one_folder_run
    check_ok(proc)
    run = only_run(log_dir)
    assert 0 <= json.loads((run / "metrics.json").read_text())["test/acc"] <= 1
    counts = split_counts((run / "train.log").read_text())
    assert set(counts) == {"train", "val", "test"} and sum(counts.values()) == total
    assert counts["val"] == counts["test"] == round(0.15 * total)
    assert_checkpoints_load_weights_only(log_dir)


def test_eval_from_the_best_checkpoint_of_an_image_folder_run(one_folder_run) -> None:
    log_dir, _, proc = one_folder_run
    check_ok(proc)
    trained = json.loads((only_run(log_dir) / "metrics.json").read_text())
    (best,) = (only_run(log_dir) / "checkpoints").glob("best_*.ckpt")
    check_ok(run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}"], log_dir))
    evaluated = json.loads((only_run(log_dir, "eval") / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


def test_train_val_test_folders_are_used_as_given(tmp_path: Path) -> None:
    sizes = {"train": write_images(tmp_path / "train", 10, seed=1), "test": write_images(tmp_path / "test", 3, seed=2)}
    sizes["val"] = write_images(tmp_path / "val", 2, seed=3, classes=CLASSES[:2])
    paths = [f"data.{split}_path={tmp_path / split}" for split in ("train", "val", "test")]
    proc = run_cli("litforge.train", [*TINY, *paths], tmp_path / "logs")
    check_ok(proc)
    run = only_run(tmp_path / "logs")
    assert split_counts((run / "train.log").read_text()) == sizes
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
    assert_checkpoints_load_weights_only(tmp_path / "logs")


@pytest.mark.parametrize("mistake", ["val class unseen in training", "data.path at a train/val/test tree"])
def test_layout_mistakes_are_refused_with_the_fix(mistake: str, tmp_path: Path) -> None:
    tree = tmp_path / "pictures"
    write_images(tree / "train", 2, seed=4, classes=CLASSES[:2])
    write_images(tree / "val", 1, seed=5)
    if mistake == "val class unseen in training":
        overrides = [f"data.train_path={tree / 'train'}", f"data.val_path={tree / 'val'}"]
        expected = f"class folder {tree / 'val' / 'diagonal'} is not a class of the training data"
    else:
        overrides = [f"data.path={tree}"]
        expected = f"data.train_path={tree / 'train'} data.val_path={tree / 'val'}"
    proc = run_cli("litforge.train", [*TINY, *overrides], tmp_path / "logs")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path / "logs")
