"""Predict and evaluate new images and table rows from a checkpoint alone, through the command line:
the training data and run directory are deleted before any of it runs."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litforge.assembly import build_task
from litforge.utils.checkpoint import load_checkpoint
from tests.helpers import QUIET, check_ok, run_cli, run_dirs
from tests.user_files import houses_csv, png_tree

TRAIN_IMAGES = [*QUIET, "data=image_folder", "data.image_size=[12,12]", "data.batch_size=8", "trainer.max_epochs=2"]
TRAIN_TABLE = [*QUIET, "data=tabular_file", "model=regressor", "data.target=price", "data.impute=mean"]
# on the CPU, where the test computes the expected forward pass (a GPU convolution may round differently)
PREDICT = ["extras=quiet", "trainer=cpu"]


def trained_checkpoint(root: Path, data: Path, overrides: list[str]) -> Path:
    """Train on `data`, keep a copy of the last checkpoint, then delete the data and the run."""
    check_ok(run_cli("litforge.train", [*overrides, "trainer.max_epochs=2", f"data.path={data}"], root / "train_logs"))
    (run,) = run_dirs(root / "train_logs")
    checkpoint = shutil.copy(run / "checkpoints" / "last.ckpt", root / "model.ckpt")
    shutil.rmtree(root / "train_logs")
    if data.is_dir():
        shutil.rmtree(data)
    else:
        data.unlink()
    return Path(checkpoint)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image_model")
    return trained_checkpoint(root, png_tree(root / "pictures", per_class=8), TRAIN_IMAGES)


@pytest.fixture(scope="module")
def table_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("table_model")
    return trained_checkpoint(root, houses_csv(root / "houses.csv", rows=60, gaps=True), TRAIN_TABLE)


def predict(checkpoint: Path, given: Path | str, log_dir: Path, *extra: str) -> list[dict[str, str]]:
    check_ok(run_cli("litforge.predict", [*PREDICT, f"ckpt_path={checkpoint}", f"input={given}", *extra], log_dir))
    (run,) = run_dirs(log_dir, "predict")
    with open(run / "predictions.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_pictures(folder: Path) -> list[Path]:
    """PNGs of sizes and modes training never saw (one in a sub-folder), beside a file that is no image."""
    rng = np.random.default_rng(7)
    (folder / "more").mkdir(parents=True)
    files = []
    for i, (mode, size) in enumerate([("L", (31, 9)), ("RGB", (12, 12)), ("RGBA", (50, 40)), ("P", (7, 19))]):
        pixels = np.clip(rng.normal(40 + 27 * i, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        path = folder / ("more" if i == 3 else ".") / f"shot_{i}.png"
        Image.fromarray(pixels, "RGB").convert(mode).save(path)
        files.append(path.resolve())
    (folder / "notes.txt").write_text("not a picture\n")
    return sorted(files)


def image_probabilities(checkpoint_path: Path, files: list[Path]) -> torch.Tensor:
    """The model's forward pass on the files prepared as its training images were: the checkpoint's
    input shape (channels, size) and normalisation statistics."""
    checkpoint = load_checkpoint(checkpoint_path)
    channels, height, width = checkpoint["hyper_parameters"]["input_shape"]
    state = checkpoint["ImageDataModule"]
    mode = {1: "L", 3: "RGB"}[channels]
    images = []
    for file in files:
        with Image.open(file) as image:
            array = np.asarray(image.convert(mode).resize((width, height)), dtype=np.float32)
        images.append(torch.from_numpy(array.reshape(height, width, channels)).permute(2, 0, 1))
    batch = (torch.stack(images) - state["mean"].view(1, -1, 1, 1)) / state["std"].view(1, -1, 1, 1)
    model = build_task(checkpoint).eval()
    with torch.no_grad():
        return torch.softmax(model(batch), dim=-1)


def test_predict_a_single_png_lists_its_top_classes(image_model: Path, tmp_path: Path) -> None:
    picture = tmp_path / "one.png"
    Image.fromarray(np.full((23, 41, 4), 90, dtype=np.uint8), "RGBA").save(picture)
    (row,) = predict(image_model, picture, tmp_path / "logs", "top_k=2")
    probabilities = {key: float(value) for key, value in row.items() if key.startswith("prob/")}
    assert row["id"] == str(picture) and len(probabilities) == 2
    assert row["prediction"] in ("cat", "dog", "fox") and float(row["probability"]) == max(probabilities.values())


def test_predictions_for_a_folder_equal_the_models_forward_pass(image_model: Path, tmp_path: Path) -> None:
    files = write_pictures(tmp_path / "new")
    rows = predict(image_model, tmp_path / "new", tmp_path / "logs", "batch_size=3")
    assert [Path(row["id"]).resolve() for row in rows] == files
    expected = image_probabilities(image_model, files)
    got = torch.tensor([[float(row[f"prob/{name}"]) for name in ("cat", "dog", "fox")] for row in rows])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    names = ["cat", "dog", "fox"]
    assert [row["prediction"] for row in rows] == [names[i] for i in expected.argmax(dim=-1)]


@pytest.mark.parametrize("make", ["empty folder", "broken file"])
def test_a_folder_without_readable_images_is_refused_naming_it(image_model: Path, tmp_path: Path, make: str) -> None:
    folder = tmp_path / "new"
    folder.mkdir()
    named = folder
    if make == "broken file":
        named = folder / "cut.png"
        named.write_bytes(b"\x89PNG not really")
    proc = run_cli("litforge.predict", [*PREDICT, f"ckpt_path={image_model}", f"input={folder}"], tmp_path / "logs")
    assert proc.returncode == 2 and str(named) in proc.stderr, proc.stderr
    assert not run_dirs(tmp_path / "logs", "predict")


def test_predict_rows_of_a_csv_without_the_target(table_model: Path, tmp_path: Path) -> None:
    table = houses_csv(tmp_path / "full.csv", rows=9, seed=5, gaps=True)
    lines = table.read_text().splitlines()
    # the target column (last) removed; the text column `town` stays and is ignored
    (tmp_path / "new.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    rows = predict(table_model, tmp_path / "new.csv", tmp_path / "logs")
    assert [row["id"] for row in rows] == [str(i) for i in range(9)]

    checkpoint = load_checkpoint(table_model)
    state = checkpoint["TabularDataModule"]
    values = [[float(cell or "nan") for cell in line.split(",")[:2]] for line in lines[1:]]
    features = torch.tensor(values)[:, [("rooms", "area").index(name) for name in state["feature_names"]]]
    assert features.isnan().any(), "the rows should include a gap the training statistics fill"
    features = torch.where(features.isnan(), state["fill"], features)
    with torch.no_grad():
        expected = build_task(checkpoint).eval()((features - state["feature_mean"]) / state["feature_std"])
    got = torch.tensor([float(row["prediction"]) for row in rows])
    torch.testing.assert_close(got, expected.squeeze(-1), atol=1e-3, rtol=1e-5)


def test_a_csv_missing_a_feature_column_is_refused_naming_it(table_model: Path, tmp_path: Path) -> None:
    (tmp_path / "new.csv").write_text("rooms,colour\n3,red\n4,blue\n")
    proc = run_cli(
        "litforge.predict", [*PREDICT, f"ckpt_path={table_model}", f"input={tmp_path / 'new.csv'}"], tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "['area']" in proc.stderr and "['rooms', 'colour']" in proc.stderr
    assert not run_dirs(tmp_path, "predict")


def eval_run(checkpoint: Path, test_path: Path, log_dir: Path) -> tuple[Path, dict[str, float]]:
    check_ok(run_cli("litforge.eval", [*QUIET, f"ckpt_path={checkpoint}", f"data.test_path={test_path}"], log_dir))
    (run,) = run_dirs(log_dir, "eval")
    return run, json.loads((run / "metrics.json").read_text())


def test_eval_scores_every_image_of_a_new_labelled_folder(image_model: Path, tmp_path: Path) -> None:
    run, metrics = eval_run(image_model, png_tree(tmp_path / "labelled", per_class=5, seed=3), tmp_path / "logs")
    assert f"test split: 15 images from {tmp_path / 'labelled'}" in (run / "eval.log").read_text()
    assert 0 <= metrics["test/acc"] <= 1 and (run / "plots" / "confusion_matrix.png").is_file()


def test_eval_scores_every_row_of_a_new_labelled_csv(table_model: Path, tmp_path: Path) -> None:
    run, metrics = eval_run(table_model, houses_csv(tmp_path / "labelled.csv", rows=23, seed=4), tmp_path / "logs")
    assert "test split: 23 rows" in (run / "eval.log").read_text()
    assert {"test/mae", "test/r2"} <= set(metrics) and (run / "plots" / "predicted_vs_actual.png").is_file()


def test_eval_without_the_training_data_says_which_path_is_gone(image_model: Path, tmp_path: Path) -> None:
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={image_model}"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"data.path={image_model.parent / 'pictures'}" in proc.stderr and "data.test_path" in proc.stderr
