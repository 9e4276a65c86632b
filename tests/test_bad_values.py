"""Values no run could use are refused with the config check, before any data is read or torch is
imported: exit 2, a message naming the key and what is valid, no run directory left behind.
The lists of valid values written out for that check are compared with what the libraries take."""

import importlib.util
import typing
from pathlib import Path

import pytest
import torch

from litforge.tasks.registry import TASK_METRICS
from litforge.utils.checks import ACCELERATORS, PRECISIONS
from tests.helpers import QUIET, TINY_BACKBONE, check_ok, compose_config, run_cli, run_dirs

PASSWORD = "s3cret-pw"
MLFLOW = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs mlflow (.[tracking])")
NO_XLA = pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="torch_xla is installed")

# (overrides, environment, what the message must say: the key and value, and what is valid)
CASES = {
    "negative lr": (["model.optimizer.lr=-1"], {}, ["model.optimizer.lr=-1", "a positive learning rate"]),
    "fractional batch": (["data.batch_size=2.5"], {}, ["data.batch_size=2.5", "at least 1 (a whole number"]),
    "null batch": (["data.batch_size=null"], {}, ["data.batch_size=null", "at least 1 (a whole number"]),
    "negative epochs": (["trainer.max_epochs=-2"], {}, ["trainer.max_epochs=-2", "-1 for no limit"]),
    "zero epochs": (["trainer.max_epochs=0"], {}, ["trainer.max_epochs=0", "python -m litforge.eval ckpt_path="]),
    "zero steps": (["trainer.max_steps=0"], {}, ["trainer.max_steps=0", "-1 for no limit"]),
    "precision": (["trainer.precision=bf17"], {}, ["trainer.precision=bf17", "bf16-mixed, 16-true"]),
    "tpu": pytest.param(["trainer.accelerator=tpu"], {}, ["trainer.accelerator=tpu", "torch_xla", "cpu"], marks=NO_XLA),
    "accelerator": (["trainer.accelerator=gpus"], {}, ["trainer.accelerator=gpus", "auto, cpu, gpu, cuda, mps"]),
    "dropout": (["model.net.dropout=1.5"], {}, ["model.net.dropout=1.5", "from 0 up to, not including, 1"]),
    "backbone dropout": (
        ["experiment=text_clf_offline", "model.backbone.config.hidden_dropout_prob=-0.1"],
        {},
        ["model.backbone.config.hidden_dropout_prob=-0.1", "from 0 up to"],
    ),
    "monitor": (["model.monitor=val/accuracy"], {}, ["model.monitor=val/accuracy", "val/acc, val/f1"]),
    "early stopping monitor": (
        ["experiment=diabetes_mlp", "callbacks.early_stopping.monitor=val/acc"],
        {},
        ["callbacks.early_stopping.monitor=val/acc", "val/mse, val/rmse, val/mae, val/r2"],
    ),
    "mode": (["model.mode=maximize"], {}, ["model.mode=maximize", "min or max"]),
    "tracking uri scheme": pytest.param(
        ["logger=mlflow", "logger.mlflow.tracking_uri=htp://x"],
        {},
        ["logger.mlflow.tracking_uri=htp://x", "'htp'", "http, https, file, sqlite"],
        marks=MLFLOW,
    ),
    "host without scheme": pytest.param(
        ["logger=mlflow", "logger.mlflow.tracking_uri=localhost:5000"],
        {},
        ["logger.mlflow.tracking_uri=localhost:5000", "http://127.0.0.1:5000"],
        marks=MLFLOW,
    ),
    "password in MLFLOW_TRACKING_URI": pytest.param(
        ["logger=mlflow"],
        {"MLFLOW_TRACKING_URI": f"http://ann:{PASSWORD}@127.0.0.1:5000"},
        ["MLFLOW_TRACKING_URI=http://ann:***@127.0.0.1:5000 (environment)", "MLFLOW_TRACKING_PASSWORD"],
        marks=MLFLOW,
    ),
}


def assert_refused(proc, says: list[str], log_dir: Path, task: str = "train") -> None:
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    for words in says:
        assert words in proc.stderr, (words, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    assert not run_dirs(log_dir, task), "a refused run left its run directory behind"


@pytest.mark.parametrize(("overrides", "env", "says"), list(CASES.values()), ids=list(CASES))
def test_a_value_no_run_could_use_is_refused_before_training(
    overrides: list[str], env: dict[str, str], says: list[str], tmp_path: Path
) -> None:
    proc = run_cli("litforge.train", [*QUIET, *overrides], tmp_path, env=env)
    assert_refused(proc, says, tmp_path)


def test_eval_refuses_a_bad_value_before_reading_the_checkpoint(tmp_path: Path) -> None:
    # not a checkpoint at all: the value is refused first, so nothing is loaded
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not read")
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={checkpoint}", "trainer.precision=bf17"], tmp_path)
    assert_refused(proc, ["trainer.precision=bf17", "bf16-mixed"], tmp_path, "eval")


def test_no_epoch_limit_trains_until_max_steps(tmp_path: Path) -> None:
    # Lightning's -1 ("no limit") stays valid: max_steps ends the run
    overrides = [*QUIET, "trainer.max_epochs=-1", "trainer.max_steps=3", "test=false", "logger=csv"]
    check_ok(run_cli("litforge.train", overrides, tmp_path))
    (run,) = run_dirs(tmp_path)
    checkpoint = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3 and checkpoint["epoch"] == 0


def test_precisions_are_those_lightning_takes() -> None:
    from lightning.fabric.connector import _PRECISION_INPUT

    lightning = {value for literal in typing.get_args(_PRECISION_INPUT) for value in typing.get_args(literal)}
    assert set(PRECISIONS) == lightning


def test_accelerators_are_those_lightning_takes() -> None:
    from lightning.fabric.accelerators import ACCELERATOR_REGISTRY

    # "auto" and "gpu" are the Trainer's own names beside its registry's
    assert set(ACCELERATORS) == {"auto", "gpu", *ACCELERATOR_REGISTRY.available_accelerators()}


@MLFLOW
def test_tracking_schemes_are_those_mlflow_has_a_store_for() -> None:
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from litforge.tracking.settings import TRACKING_SCHEMES

    assert set(TRACKING_SCHEMES) == set(_tracking_store_registry._registry) - {""}


TINY_TEXT = ["data.vocab_size=120", "data.max_length=24", "data.batch_size=8"]
# a tiny run of each task, on data that needs no download
TASK_RUNS = {
    "litforge.tasks.image_classification.ImageClassificationModule": ["data=digits", "model=image_classifier"],
    "litforge.tasks.regression.RegressionModule": ["experiment=diabetes_mlp"],
    "litforge.tasks.tabular_classification.TabularClassificationModule": ["experiment=breast_cancer_mlp"],
    "litforge.tasks.text_classification.TextClassificationModule": [
        *("experiment=text_clf_offline", "data.num_examples=120", *TINY_TEXT, *TINY_BACKBONE),
    ],
    "litforge.tasks.token_classification.TokenClassificationModule": [
        *("experiment=ner_offline", "data.num_sentences=60", *TINY_TEXT, *TINY_BACKBONE),
    ],
    "litforge.tasks.masked_lm.MaskedLanguageModelingModule": [
        *("experiment=mlm_offline", "data.num_examples=120", *TINY_TEXT, *TINY_BACKBONE),
    ],
}


@pytest.mark.parametrize("task", sorted(TASK_METRICS), ids=lambda t: t.rsplit(".", 1)[-1])
def test_the_declared_metrics_are_those_the_task_logs(task: str, tmp_path: Path) -> None:
    from litforge.train import train

    assert set(TASK_METRICS) == set(TASK_RUNS), "every task needs a run here"
    overrides = [*TASK_RUNS[task], "debug=fdr", "test=false", *QUIET, f"paths.data_dir={tmp_path / 'data'}"]
    cfg = compose_config(overrides, log_dir=tmp_path)
    assert cfg.model._target_ == task
    logged = sorted(k for k in train(cfg) if k.startswith("val/"))
    assert logged == sorted(TASK_METRICS[task])
