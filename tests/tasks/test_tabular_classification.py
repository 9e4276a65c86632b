"""Tabular classification: class weights in the loss, a short fit's metrics and figures, and the user's
journey through the command line (a CSV with a Yes/No target, text and numeric columns with gaps:
train, then predict new rows with an unseen category from the checkpoint), and a refused target."""

import csv
import json
import re
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from litforge.assembly import instantiate_task
from litforge.data.tabular.classification import TabularClassificationDataModule
from litforge.utils.checkpoint import load_checkpoint
from litforge.utils.checks import check_values
from litforge.utils.errors import UserError
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

DATA = {"feature_names": ["a", "b"], "class_names": ["No", "Yes"], "class_counts": [30, 10]}


def classifier(tmp_path: Path, *overrides: str, data: dict | None = None):
    cfg = compose_config(["model=tabular_classifier", "model.net.hidden_sizes=[8]", *overrides], log_dir=tmp_path)
    return instantiate_task(cfg.model, data or DATA)


@pytest.mark.parametrize(("weights", "expected"), [("[1,3]", [1.0, 3.0]), ("balanced", [40 / 60, 40 / 20])])
def test_class_weights_weight_each_rows_loss_by_its_class(weights: str, expected: list, tmp_path: Path) -> None:
    model = classifier(tmp_path, f"model.class_weights={weights}")
    logits, targets = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 1])
    per_row = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weight = torch.tensor(expected)[targets]
    torch.testing.assert_close(model.loss(logits, targets), (weight * per_row).sum() / weight.sum())
    plain = classifier(tmp_path)
    torch.testing.assert_close(plain.loss(logits, targets), per_row.mean())


def test_class_weights_of_the_wrong_length_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"model.class_weights=\[1.0, 2.0, 3.0\]: .* in the order \['No', 'Yes'\]"):
        classifier(tmp_path, "model.class_weights=[1.0,2.0,3.0]")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.class_weights=[1,0]", "model.class_weights=[1, 0]: give null, balanced, or one positive weight"),
        ("data.categorical_encoding=ordinal", "data.categorical_encoding=ordinal: give onehot"),
    ],
)
def test_bad_options_are_refused_with_the_config(override: str, message: str, tmp_path: Path) -> None:
    cfg = compose_config(["experiment=breast_cancer_mlp", override], log_dir=tmp_path)
    with pytest.raises(UserError, match=re.escape(message)):
        check_values(cfg)


def test_a_short_multiclass_fit_logs_every_metric_and_a_confusion_matrix(tmp_path: Path) -> None:
    L.seed_everything(0)
    dm = TabularClassificationDataModule(source="wine", batch_size=32)
    dm.setup("fit")
    model = classifier(tmp_path, data=dm.model_kwargs())
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=dm)
    (metrics,) = trainer.test(model, datamodule=dm, verbose=False)
    assert {"test/acc", "test/f1", "test/auroc", "test/ap", "test/loss"} <= set(metrics)
    assert all(0 <= metrics[k] <= 1 for k in ("test/acc", "test/auroc", "test/ap"))
    assert set(model.figures()) == {"confusion_matrix"}


def weather_csv(path: Path, rows: int = 80, seed: int = 0) -> Path:
    """A date, a wind direction with gaps, a humidity with gaps, a temperature, and whether it
    rains tomorrow, Yes or No."""
    rng = np.random.default_rng(seed)
    lines = ["date,wind,humidity,temp,rain_tomorrow"]
    for i in range(rows):
        wind = str(rng.choice(["N", "S", "E", "W"])) if i % 9 else ""
        humidity = float(rng.uniform(20, 100))
        rain = "Yes" if humidity + 15 * (wind == "W") + rng.normal(0, 10) > 70 else "No"
        humidity_cell = "" if i % 13 == 5 else f"{humidity:.1f}"
        lines.append(f"2024-03-{i % 28 + 1:02d},{wind},{humidity_cell},{rng.normal(12, 5):.1f},{rain}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# new rows without the target: a wind direction training never saw (NW, twice), a gap in each column
NEW_ROWS = """date,wind,humidity,temp
2024-04-01,N,55.0,10.0
2024-04-02,NW,80.0,12.0
2024-04-03,,90.0,9.0
2024-04-04,W,,14.0
2024-04-05,NW,30.0,20.0
"""


TRAIN = [
    *QUIET,
    "data=tabular_classification_file",
    "model=tabular_classifier",
    "data.target=rain_tomorrow",
    "data.impute=mean",
    "data.missing_indicator=true",
    "data.categorical_encoding=embedding",
    "model.class_weights=balanced",
    "trainer.max_epochs=3",
]


def test_train_on_a_csv_then_predict_new_rows_with_an_unseen_category(tmp_path: Path) -> None:
    table = weather_csv(tmp_path / "weather.csv")
    check_ok(run_cli("litforge.train", [*TRAIN, f"data.path={table}"], tmp_path / "logs"))
    (run,) = run_dirs(tmp_path / "logs")
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("acc", "f1", "auroc"):
        assert 0 <= metrics[f"val/{name}"] <= 1 and 0 <= metrics[f"test/{name}"] <= 1, metrics
    assert all((run / "plots" / f"{name}.png").is_file() for name in ("confusion_matrix", "roc", "precision_recall"))
    log = (run / "train.log").read_text()
    assert "dropped date-like column(s) ['date']" in log
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert load_checkpoint(checkpoint)["hyper_parameters"]["class_names"] == ["No", "Yes"]

    new = tmp_path / "new.csv"
    new.write_text(NEW_ROWS)
    given = ["extras=quiet", "trainer=cpu", f"ckpt_path={checkpoint}", f"input={new}"]
    check_ok(run_cli("litforge.predict", given, tmp_path / "logs"))
    (predicted,) = run_dirs(tmp_path / "logs", "predict")
    with open(predicted / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == [str(i) for i in range(5)]
    for row in rows:
        probabilities = [float(row["prob/No"]), float(row["prob/Yes"])]
        assert row["prediction"] == ["No", "Yes"][int(np.argmax(probabilities))]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
    log = (predicted / "predict.log").read_text()
    assert "2 value(s) of column 'wind' not seen in training, read as unknown: ['NW']" in log


def test_a_numeric_target_of_many_values_is_refused_suggesting_regression(tmp_path: Path) -> None:
    table = weather_csv(tmp_path / "weather.csv", rows=120)
    given = [*QUIET, "data=tabular_classification_file", "model=tabular_classifier", "data.target=humidity"]
    proc = run_cli("litforge.train", [*given, f"data.path={table}"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "target column 'humidity'" in proc.stderr and "model=regressor" in proc.stderr
    assert "Traceback" not in proc.stderr
