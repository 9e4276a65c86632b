"""Train and eval as users run them: subprocesses, run directories, checkpoints, exit codes."""

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

FAST = [*QUIET, "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]


def test_fast_dev_run_then_eval_from_checkpoint(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*QUIET, "trainer=cpu", "trainer.max_epochs=3"], tmp_path))
    (run,) = run_dirs(tmp_path)
    for part in [
        ".hydra/config.yaml",
        "train.log",
        "csv/metrics.csv",
        "metrics.json",
        "checkpoints/last.ckpt",
        "plots/confusion_matrix.png",
    ]:
        assert (run / part).is_file(), part
    assert len(list((run / "checkpoints").glob("best_*.ckpt"))) == 1
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["test/acc"] > 0.5

    best = next((run / "checkpoints").glob("best_*.ckpt"))
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}"], tmp_path)
    check_ok(proc)
    (eval_run,) = run_dirs(tmp_path, "eval")
    evaluated = json.loads((eval_run / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-4)
    assert (eval_run / "plots/confusion_matrix.png").is_file()
    assert "test/acc" in proc.stdout


@pytest.mark.parametrize("preset", ["default", "cpu"])
def test_fast_dev_run_per_trainer_preset(preset: str, tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*QUIET, f"trainer={preset}", "debug=fdr"], tmp_path)
    check_ok(proc)
    assert "test/acc" in proc.stdout


def test_bf16_runs_on_cpu_when_16_mixed_is_asked(tmp_path: Path) -> None:
    # with clipping, which Lightning's mixed precision refuses for a fused Adam step: Adam takes the loop
    overrides = [*QUIET, "trainer=cpu", "trainer.precision=16-mixed", "trainer.gradient_clip_val=1.0", "debug=fdr"]
    proc = run_cli("litforge.train", overrides, tmp_path)
    check_ok(proc)
    (run,) = run_dirs(tmp_path)
    assert "precision that runs: bf16-mixed" in (run / "train.log").read_text()
    forced = run_cli("litforge.train", [*overrides, "model.optimizer.fused=true"], tmp_path / "forced")
    assert forced.returncode == 2 and "Traceback" not in forced.stderr
    assert "model.optimizer.fused=true" in forced.stderr and "trainer.gradient_clip_val=null" in forced.stderr


def test_mlp_with_scheduler_and_sgd(tmp_path: Path) -> None:
    overrides = [
        *FAST,
        "experiment=digits_mlp",
        "model/optimizer=sgd",
        "model/scheduler=cosine_warmup",
        "trainer.gradient_clip_val=1.0",
        "trainer.accumulate_grad_batches=2",
    ]
    check_ok(run_cli("litforge.train", overrides, tmp_path))


def test_run_returns_optimized_metric_and_logs_lr(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*FAST, "model/scheduler=step", "trainer.log_every_n_steps=1"], tmp_path))
    (run,) = run_dirs(tmp_path)
    header = (run / "csv/metrics.csv").read_text().splitlines()[0]
    assert "lr-Adam" in header and "val/acc" in header and "train/loss_step" in header
    # the best checkpoint holds weights only; last.ckpt keeps the callbacks' states
    last = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    score = next(
        v["best_model_score"]
        for k, v in last["callbacks"].items()
        if k.startswith("ModelCheckpoint{'monitor': 'val/acc")
    )
    assert f"optimized metric val/acc = {float(score):.6f}" in (run / "train.log").read_text()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=nope"], "Could not find 'model/nope'"),
        (["trainer.max_epoch=3"], "trainer.max_epoch"),
        (["trainer.max_epochs=ten"], "trainer.max_epochs expects a number"),
        (["model.optimizer.lr=fast"], "model.optimizer.lr expects a number"),
        (["ckpt_path=/no/such/file.ckpt"], "no such checkpoint file"),
        (["data.batch_size=0"], "data.batch_size=0"),
        (["data=image_folder", "data.path=/no/such/folder"], "no such folder"),
        (["trainer=mps"], "trainer.accelerator=mps"),
    ],
)
def test_bad_train_input_is_refused_clearly(overrides: list[str], message: str, tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*QUIET, *overrides], tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*.ckpt")), "a refused run wrote a checkpoint"
    assert not run_dirs(tmp_path), "a refused run left its run directory behind"


def test_checkpoint_of_another_task_is_refused(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*FAST, "trainer.max_epochs=1", "test=false"], tmp_path / "digits"))
    (checkpoint,) = (tmp_path / "digits").rglob("last.ckpt")
    proc = run_cli("litforge.train", [*QUIET, "experiment=diabetes_mlp", f"ckpt_path={checkpoint}"], tmp_path / "reg")
    assert proc.returncode == 2
    assert "holds a ImageClassificationModule, but this run trains a RegressionModule" in proc.stderr
    assert not run_dirs(tmp_path / "reg")


def test_gpu_preset_without_gpu_is_refused(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = run_cli("litforge.train", [*QUIET, "trainer=gpu"], tmp_path)
    assert proc.returncode == 2
    assert "trainer.accelerator=gpu: no such device" in proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such checkpoint file"),
        (b"not a checkpoint", "not a readable checkpoint"),
        ("plain", "not a litforge checkpoint"),
    ],
)
def test_bad_checkpoint_is_refused_clearly(content: bytes | str | None, message: str, tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "plain":
        torch.save({"state_dict": {}}, path)
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={path}"], tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_and_cfg_answer_without_training(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", ["--help"], tmp_path)
    check_ok(proc)
    assert "model/optimizer: adam, adamw, rmsprop, sgd" in proc.stdout
    assert "hparams_search: conll_ner_optuna, diabetes_optuna, digits_grid" in proc.stdout
    proc = run_cli("litforge.eval", ["--help"], tmp_path)
    check_ok(proc)
    assert "--cfg job" in proc.stdout and "logger: csv" in proc.stdout
    proc = run_cli("litforge.train", ["--cfg", "job", "model/scheduler=onecycle"], tmp_path)
    check_ok(proc)
    assert "OneCycleLR" in proc.stdout
    assert not run_dirs(tmp_path)


def test_overfitting_a_few_batches_drives_the_loss_down(tmp_path: Path) -> None:
    overrides = [
        *QUIET,
        "debug=overfit",
        "trainer.max_epochs=25",
        "trainer.detect_anomaly=false",
        "callbacks.early_stopping=null",
        "model.net.dropout=0.0",
        "trainer.log_every_n_steps=1",
    ]
    check_ok(run_cli("litforge.train", overrides, tmp_path))
    (run,) = run_dirs(tmp_path)
    rows = (run / "csv/metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/loss_epoch")
    losses = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert len(losses) >= 20
    assert losses[-1] < 0.1 * losses[0], losses
