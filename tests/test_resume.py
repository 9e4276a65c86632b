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


def start_training(overrides: list[str], log_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "litforge.train", *overrides, f"paths.log_dir={log_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
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


@pytest.mark.slow
def test_sigkill_in_mid_epoch_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", SLOW_EPOCHS, tmp_path / "whole"))
    (whole,) = run_dirs(tmp_path / "whole")
    expected = json.loads((whole / "metrics.json").read_text())

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
    resumed = json.loads((run / "metrics.json").read_text())
    for key in ["test/acc", "test/loss", "val/acc"]:
        assert resumed[key] == pytest.approx(expected[key], rel=1e-5), key
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
