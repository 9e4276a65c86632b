"""Lightning's own trainer settings from the command line: values, keys, short and train-only runs."""

import csv
import inspect
import json
import re
import types
import typing
from pathlib import Path

import pytest

from litforge.utils.config import ACCEPTED_KINDS, CONFIG_DIR
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

# short runs: a few batches, no figures
TINY = [*QUIET, "~callbacks.save_figures", "trainer.max_epochs=2", "trainer.limit_train_batches=5"]
TINY += ["trainer.limit_test_batches=2"]
# objects, built from their own config groups (or not settable from a config)
NOT_IN_YAML = {"self", "callbacks", "logger", "plugins"}
# where conf/trainer/default.yaml departs from Lightning's default (each says why in the yaml)
TEMPLATE_CHOICES = {
    "default_root_dir",
    "devices",
    "precision",
    "max_epochs",
    "min_epochs",
    "log_every_n_steps",
    "gradient_clip_algorithm",
    "deterministic",
}
PRESETS = ["default", "cpu", "gpu", "mps", "ddp", "ddp_sim", "fsdp", "deepspeed"]


def trainer_parameters() -> dict[str, inspect.Parameter]:
    from lightning.pytorch import Trainer

    params = inspect.signature(Trainer.__init__).parameters
    return {name: p for name, p in params.items() if name not in NOT_IN_YAML}


def yaml_kinds(annotation: typing.Any) -> set[str]:
    """What a config value (bool, number, string, list, mapping) can give for this annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(yaml_kinds(a) for a in args))
    if origin is typing.Literal:
        return {"bool" if isinstance(a, bool) else "number" if isinstance(a, int) else "string" for a in args}
    if origin in (list, tuple):
        return {"list"}
    if origin is dict:
        return {"mapping"}
    from lightning.pytorch.strategies import Strategy

    simple = {bool: "bool", int: "number", float: "number", str: "string", Path: "string"}
    # a Strategy is built from a mapping with a `_target_` (trainer=fsdp, trainer=deepspeed)
    simple[Strategy] = "mapping"
    # None (always accepted), objects (an Accelerator, a timedelta) that no config value is
    return {simple[annotation]} if annotation in simple else set()


def test_trainer_yaml_holds_every_trainer_argument_with_lightning_defaults() -> None:
    from omegaconf import OmegaConf

    params = trainer_parameters()
    listed = OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml")
    assert set(listed) - {"_target_"} == set(params), "conf/trainer/default.yaml and Trainer.__init__ differ"
    for name, param in params.items():
        if name not in TEMPLATE_CHOICES:
            assert listed[name] == param.default, name


def test_accepted_kinds_match_the_trainer_signature() -> None:
    table = {name: set(kinds.split()) for name, kinds in ACCEPTED_KINDS["lightning.pytorch.Trainer"].items()}
    assert table == {name: yaml_kinds(p.annotation) for name, p in trainer_parameters().items()}


@pytest.mark.parametrize("preset", PRESETS)
def test_trainer_presets_set_only_trainer_arguments_of_an_accepted_kind(preset: str) -> None:
    from omegaconf import OmegaConf

    from litforge.utils.config import _kind

    trainer = OmegaConf.to_container(compose_config([f"trainer={preset}"]).trainer)
    accepted = ACCEPTED_KINDS[trainer.pop("_target_")]
    assert set(trainer) == set(accepted)
    for name, value in trainer.items():
        assert value is None or _kind(value) in accepted[name].split(), (name, value)


# validate() checks the override kinds before the checkpoint path: a value that reaches the
# checkpoint message passed the check, in about a second and without training
@pytest.mark.parametrize(
    "override",
    ["trainer.devices=auto", "trainer.devices=[0,1]", "trainer.precision=16", "trainer.precision=bf16-mixed"],
)
def test_lightning_values_pass_the_override_check(override: str, tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*QUIET, override, f"ckpt_path={tmp_path}/none.ckpt"], tmp_path)
    assert proc.returncode == 2
    assert "no such checkpoint file" in proc.stderr, proc.stderr
    assert "expects" not in proc.stderr


def test_a_value_of_the_wrong_kind_is_still_refused(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*QUIET, "trainer.limit_val_batches=all"], tmp_path)
    assert proc.returncode == 2
    assert "trainer.limit_val_batches expects a number" in proc.stderr
    assert not run_dirs(tmp_path)


def test_a_value_lightning_refuses_ends_as_its_message_not_a_traceback(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*TINY, "trainer.gradient_clip_algorithm=foo"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "foo" in proc.stderr and "norm" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path)


def val_rows(run: Path) -> dict[int, dict[str, str]]:
    """The csv logger's validation row of each epoch."""
    with (run / "csv/metrics.csv").open() as f:
        return {int(r["epoch"]): r for r in csv.DictReader(f) if r["val/acc"]}


def test_auto_devices_16_bit_and_metrics_of_the_best_epoch(tmp_path: Path) -> None:
    # the checkpoint keeps the *lowest* accuracy, an early epoch: a mixture with the last epoch would show
    overrides = [*TINY, "trainer.max_epochs=3", "trainer.devices=auto", "trainer.precision=16"]
    check_ok(run_cli("litforge.train", [*overrides, "callbacks.model_checkpoint.mode=min"], tmp_path))
    (run,) = run_dirs(tmp_path)
    # a CPU runs 16-bit mixed precision as bf16-mixed
    assert re.search(r"precision that runs: (bf)?16-mixed", (run / "train.log").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    rows = val_rows(run)
    best, last = int(metrics["best_epoch"]), int(metrics["last/epoch"])
    assert last == max(rows) and best != last
    assert (run / f"checkpoints/best_epoch_{best:03d}.ckpt").is_file()
    assert metrics["val/acc"] == pytest.approx(min(float(r["val/acc"]) for r in rows.values()))
    val_keys = [k for k in metrics if k.startswith("val/")]
    assert {"val/acc", "val/loss", "val/f1"} <= set(val_keys)
    for key in val_keys:
        assert metrics[key] == pytest.approx(float(rows[best][key])), key
        assert metrics[f"last/{key}"] == pytest.approx(float(rows[last][key])), key
    assert "test/acc" in metrics


def test_a_run_that_stops_before_validating_still_tests(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*TINY, "trainer.max_steps=2"], tmp_path))
    (run,) = run_dirs(tmp_path)
    assert "training ended before its first validation" in (run / "train.log").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/acc", "test/loss"} <= set(metrics)
    assert not [k for k in metrics if k.startswith("val/")]


def test_a_train_only_run_warns_that_the_optimized_metric_is_missing(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*TINY, "trainer.limit_val_batches=0", "test=false"], tmp_path)
    check_ok(proc)
    (run,) = run_dirs(tmp_path)
    log = (run / "train.log").read_text()
    assert "[WARNING] - optimized_metric=val/acc was not logged" in log
    assert "last/train/loss_epoch" in json.loads((run / "metrics.json").read_text())
    assert list((run / "checkpoints").glob("last.ckpt"))


@pytest.mark.gpu
def test_a_device_list_and_16_bit_run_on_a_gpu(tmp_path: Path) -> None:
    overrides = [*QUIET, "trainer=gpu", "trainer.devices=[0]", "trainer.precision=16", "debug=fdr"]
    check_ok(run_cli("litforge.train", overrides, tmp_path))
    (run,) = run_dirs(tmp_path)
    assert "precision that runs: 16-mixed on CUDAAccelerator" in (run / "train.log").read_text()


def test_in_a_sweep_a_missing_optimized_metric_fails_the_trial(tmp_path: Path) -> None:
    sweep = ["-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=1"]
    proc = run_cli("litforge.train", [*sweep, *TINY, "trainer.max_steps=1", "test=false"], tmp_path)
    assert proc.returncode == 1
    assert "optimized_metric=val/acc was not logged" in proc.stdout + proc.stderr
    assert "no trial of study digits_cnn completed" in proc.stderr
