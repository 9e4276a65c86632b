"""A run killed or stopped part-way continues with resume=<run dir>, losing nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

# 158 steps per epoch on digits: long enough to be killed in the middle of one
SLOW_EPOCHS = [
    *QUIET,
    "data.batch_size=8",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
    "callbacks.model_summary=null",
    "trainer.log_every_n_steps=50",
]


def start_training(overrides: list[str], log_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "litforge.train", *overrides, f"paths.log_dir={log_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"training ended before {path} appeared:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def epochs_logged(run: Path) -> list[int]:
    rows = (run / "csv/metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epoch, val = header.index("epoch"), header.index("val/acc")
    return [int(r.split(",")[epoch]) for r in rows[1:] if r.split(",")[val]]


def assert_ends_like(run: Path, whole: Path) -> None:
    """The same test and validation metrics as the uninterrupted run `whole`."""
    expected = json.loads((whole / "metrics.json").read_text())
    resumed = json.loads((run / "metrics.json").read_text())
    for key in ["test/acc", "test/loss", "val/acc"]:
        assert resumed[key] == pytest.approx(expected[key], rel=1e-5), key


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_sigkill_in_mid_epoch_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", SLOW_EPOCHS, tmp_path / "whole"))
    (whole,) = run_dirs(tmp_path / "whole")

    proc = start_training(SLOW_EPOCHS, tmp_path / "killed")
    deadline = time.monotonic() + 120
    while not run_dirs(tmp_path / "killed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (run,) = run_dirs(tmp_path / "killed")
    wait_for(run / "checkpoints/last.ckpt", proc)
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert saved["epoch"] < 3, "the kill came too late to interrupt training"

    check_ok(run_cli("litforge.train", [f"resume={run}"], tmp_path / "elsewhere"))
    assert run_dirs(tmp_path / "killed") == [run], "resume must continue in the same run directory"
    assert not (tmp_path / "elsewhere").exists()
    assert_ends_like(run, whole)
    assert epochs_logged(run) == [0, 1, 2, 3], "every epoch logged exactly once, the history kept"
    final = torch.load(whole / "checkpoints/last.ckpt", weights_only=True)
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == final["global_step"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path: Path) -> None:
    proc = start_training([*SLOW_EPOCHS, "trainer.max_epochs=50"], tmp_path)
    deadline = time.monotonic() + 120
    while not run_dirs(tmp_path):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (run,) = run_dirs(tmp_path)
    wait_for(run / "checkpoints/last.ckpt", proc)
    first = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"]
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) is not None
    saved = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert saved["global_step"] > first, "SIGTERM should save the steps done since the last epoch end"
    assert "SIGTERM: saved" in (run / "train.log").read_text()


def test_resume_needs_a_run_directory(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [f"resume={tmp_path}/nope"], tmp_path)
    assert proc.returncode == 2
    assert "is not a run directory" in proc.stderr and "Traceback" not in proc.stderr


def test_a_nan_loss_stops_training_at_once_with_the_fixes(tmp_path: Path) -> None:
    overrides = [*QUIET, "model/optimizer=sgd", "model.optimizer.lr=1e12", "trainer.max_epochs=5"]
    proc = run_cli("litforge.train", overrides, tmp_path)
    assert proc.returncode == 2
    assert "the training loss is" in proc.stderr and "gradient_clip_val" in proc.stderr
    assert "Traceback" not in proc.stderr


# a few batches an epoch: each run takes seconds
TINY = [
    *QUIET,
    "~callbacks.save_figures",
    "trainer.deterministic=true",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


def test_a_logger_choice_at_resume_keeps_the_record_and_two_resumes_end_like_one_run(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*TINY, "trainer.max_epochs=3"], tmp_path / "whole"))
    (whole,) = run_dirs(tmp_path / "whole")
    check_ok(run_cli("litforge.train", [*TINY, "trainer.max_epochs=1"], tmp_path))
    (run,) = run_dirs(tmp_path)
    record = files_under(run / ".hydra")
    assert sorted(record) == ["config.yaml", "hydra.yaml", "overrides.yaml"]

    bad = run_cli("litforge.train", [f"resume={run}", "trainer.max_epochs=ten"], tmp_path)
    assert bad.returncode == 2 and "trainer.max_epochs" in bad.stderr and "Traceback" not in bad.stderr
    assert files_under(run / ".hydra") == record, "a failed resume leaves the run's config as it was"

    check_ok(run_cli("litforge.train", [f"resume={run}", "logger=tensorboard", "trainer.max_epochs=2"], tmp_path))
    (first,) = sorted((run / ".hydra/resumes").iterdir())
    assert {k: v for k, v in files_under(run / ".hydra").items() if "/" not in k} == record
    assert sorted(p.name for p in first.iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    events = sorted((run / "tensorboard").glob("events.*"))
    assert events, "the tracker chosen at resume logs the rest of the run"

    refused = run_cli("litforge.train", [f"resume={run}", "data=diabetes"], tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "data=diabetes" in refused.stderr and "would change what this run trains" in refused.stderr
    after_first = files_under(run / ".hydra")

    # the second resume starts from the first one's choices: TensorBoard stays on, CSV stays off;
    # the run's own overrides given again (a `~key` among them) change nothing
    check_ok(run_cli("litforge.train", [f"resume={run}", *QUIET, "trainer.max_epochs=3"], tmp_path))
    assert len(sorted((run / "tensorboard").glob("events.*"))) > len(events)
    assert epochs_logged(run) == [0]
    assert len(list((run / ".hydra/resumes").iterdir())) == 2
    assert {k: v for k, v in files_under(run / ".hydra").items() if k in after_first} == after_first
    assert_ends_like(run, whole)


def test_a_run_whose_config_conf_no_longer_composes_resumes_from_its_record(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*TINY, "trainer.max_epochs=1"], tmp_path))
    (run,) = run_dirs(tmp_path)

    # a group choice on the saved config itself (the way resume once worked) is a clear error
    saved = [f"--config-path={run / '.hydra'}", "--config-name=config", f"hydra.run.dir={tmp_path / 'again'}"]
    plain = run_cli("litforge.train", [*saved, "logger=mlflow"], tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "logger is 'mlflow', not a mapping" in plain.stderr

    # as if conf/ had changed since the run: its record, not conf/, says what it trained with
    config = OmegaConf.load(run / ".hydra/config.yaml")
    lr = config.model.optimizer.lr
    config.model.optimizer.lr = lr * 3
    OmegaConf.save(config, run / ".hydra/config.yaml")
    record = files_under(run / ".hydra")
    proc = run_cli("litforge.train", [f"resume={run}", "logger=tensorboard"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot be re-composed" in proc.stderr and f"model.optimizer.lr is {lr} now, {lr * 3}" in proc.stderr
    shown = run_cli("litforge.train", [f"resume={run}", "--cfg", "job"], tmp_path)
    check_ok(shown)
    assert OmegaConf.create(shown.stdout).model.optimizer.lr == lr * 3
    assert "continuing from the recorded config" in shown.stderr
    assert files_under(run / ".hydra") == record
