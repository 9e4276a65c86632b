"""Regression on tabular data: configs, a run end to end, learning, eval from a checkpoint, bad tables."""

import json
from pathlib import Path

import hydra
import lightning.pytorch as L
import pytest
import torch

from litforge.assembly import instantiate_task
from litforge.data.tabular.regression import TabularDataModule
from litforge.tasks.regression import RegressionModule
from tests.data.tabular.test_regression import write_table
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

METRICS = ["test/loss", "test/mae", "test/mse", "test/r2", "test/rmse"]


def build(overrides: list[str], tmp_path: Path) -> tuple[TabularDataModule, RegressionModule]:
    cfg = compose_config(["experiment=diabetes_mlp", *overrides], log_dir=tmp_path)
    L.seed_everything(cfg.seed)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule, instantiate_task(cfg.model, datamodule.model_kwargs())


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.mark.parametrize("experiment", ["diabetes_mlp", "california_mlp"])
def test_experiments_compose(experiment: str, tmp_path: Path) -> None:
    cfg = compose_config([f"experiment={experiment}"], log_dir=tmp_path)
    assert cfg.model._target_.endswith("RegressionModule")
    assert (cfg.model.monitor, cfg.model.mode) == ("val/r2", "max")
    assert cfg.callbacks.early_stopping.monitor == "val/r2"
    assert isinstance(hydra.utils.instantiate(cfg.data), TabularDataModule)


def test_file_data_and_sweep_compose(tmp_path: Path) -> None:
    cfg = compose_config(
        ["experiment=diabetes_mlp", "data=tabular_file", "data.path=t.csv", "data.target=[y,z]"], log_dir=tmp_path
    )
    assert cfg.data.source == "file" and hydra.utils.instantiate(cfg.data).hparams.target == ["y", "z"]
    sweep = compose_config(["hparams_search=diabetes_optuna"], log_dir=tmp_path)
    assert sweep.model.monitor == "val/r2" and sweep.data.source == "diabetes"


@pytest.mark.parametrize(("targets", "loss"), [(["y"], "huber"), (["y", "z"], "l1")])
def test_fast_dev_run_in_original_units(targets: list[str], loss: str, tmp_path: Path) -> None:
    overrides = [
        "data=tabular_file",
        f"data.path={write_table(tmp_path)}",
        f"data.target=[{','.join(targets)}]",
        f"model.loss={loss}",
    ]
    datamodule, model = build(overrides, tmp_path)
    trainer = quiet_trainer(fast_dev_run=True)
    trainer.fit(model, datamodule=datamodule)
    (metrics,) = trainer.test(model, datamodule=datamodule, verbose=False)
    assert sorted(metrics) == METRICS
    predicted, actual = model.test_predictions.compute(), model.test_targets.compute()
    assert predicted.shape == actual.shape == (len(datamodule.splits["test"]), len(targets))
    assert actual.mean(dim=0).tolist() == pytest.approx(datamodule.splits["test"].tensors[1].mean(dim=0).tolist())
    assert list(model.figures()) == ["predicted_vs_actual"]


def test_overfits_one_batch(tmp_path: Path) -> None:
    overrides = [
        "model.net.hidden_sizes=[64,64]",
        "model.net.dropout=0.0",
        "model.optimizer.weight_decay=0.0",
        "model.optimizer.lr=0.01",
        "data.batch_size=32",
    ]
    datamodule, model = build(overrides, tmp_path)
    # overfit_batches turns shuffling off: it trains on the first 32 training rows
    x, y = datamodule.on_after_batch_transfer(datamodule.splits["train"][list(range(32))], 0)
    before = torch.nn.functional.mse_loss(model(x), y).item()
    quiet_trainer(overfit_batches=1, max_epochs=40, limit_val_batches=0).fit(model, datamodule=datamodule)
    model.eval()
    assert torch.nn.functional.mse_loss(model(x), y).item() < 0.1 * before


def test_train_then_eval_from_checkpoint_in_original_units(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*QUIET, "experiment=diabetes_mlp", "trainer.max_epochs=15"], tmp_path))
    (run,) = run_dirs(tmp_path)
    assert (run / "plots/predicted_vs_actual.png").is_file()
    trained = json.loads((run / "metrics.json").read_text())
    # the target (disease progression) spreads over ~25-350: an RMSE in standard units would be below 1
    assert 30 < trained["test/rmse"] < 90 and trained["test/r2"] > 0.2
    assert trained["test/mse"] == pytest.approx(trained["test/rmse"] ** 2, rel=1e-4)

    best = next((run / "checkpoints").glob("best_*.ckpt"))
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}"], tmp_path)
    check_ok(proc)
    (eval_run,) = run_dirs(tmp_path, "eval")
    evaluated = json.loads((eval_run / "metrics.json").read_text())
    for name in METRICS:
        assert evaluated[name] == pytest.approx(trained[name], rel=1e-5), name
    assert (eval_run / "plots/predicted_vs_actual.png").is_file()
    checkpoint = torch.load(best, weights_only=True)
    assert checkpoint["TabularDataModule"]["feature_names"][:2] == ["age", "sex"]


@pytest.mark.parametrize(
    ("content", "overrides", "message"),
    [
        ("a,b,y\n1,2,3\n", ["data.target=price"], "no column 'price'"),
        (
            "a,b,y\n1,2,3\n4,five,6\n",
            ["data.target=y", "data.features=[a,b]"],
            "column 'b' of data.path=%s is not numeric: line 3 of the file holds 'five'",
        ),
        (
            "a,b,y\n1,2,3\n4,,6\n",
            ["data.target=y"],
            "column 'b' of data.path=%s has a missing (empty or NaN) value in line 3 of the file "
            "(rows with missing or infinite values: 1 of 2). Fix the data, or set data.drop_na=true",
        ),
        ("", ["data.target=y"], "data.path=%s: the file is empty"),
    ],
    ids=["missing-target", "non-numeric", "nan", "empty"],
)
def test_bad_table_is_refused_from_the_cli(content: str, overrides: list[str], message: str, tmp_path: Path) -> None:
    """Infinite values and the other bad tables are checked in-process in tests/data/tabular/test_regression.py."""
    path = tmp_path / "table.csv"
    path.write_text(content)
    overrides = [*QUIET, "experiment=diabetes_mlp", "data=tabular_file", f"data.path={path}", *overrides]
    proc = run_cli("litforge.train", overrides, tmp_path)
    assert proc.returncode == 2
    assert message.replace("%s", str(path)) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path), "a refused run left its run directory behind"


@pytest.mark.network
def test_california_fast_dev_run(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*QUIET, "experiment=california_mlp", "debug=fdr"], tmp_path)
    check_ok(proc)
    assert "test/r2" in proc.stdout
