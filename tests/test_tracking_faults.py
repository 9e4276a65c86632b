"""MLflow under faults, as they happen to users: runs racing to create a new local store, and a real
`mlflow server` that hangs or dies while a run trains against it."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import check_ok, run_cli, run_dirs
from tests.utils import test_tracking
from tests.utils.test_tracking import TINY

# the real MLflow server of the tracking tests: one per module, up once it answers /health
booting_server = test_tracking.booting_server
mlflow_server = test_tracking.mlflow_server

# long enough that the server can fail after the first epoch and training still has epochs to go
EPOCHS = 5
FIT = [*TINY, f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=4", "logger=[csv,mlflow]"]


def _start(overrides: list[str], log_dir: Path, output: Any = subprocess.PIPE) -> subprocess.Popen:
    """`python -m litforge.train` started, its output (stderr too) to a pipe or an open file."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "litforge.train", *overrides, f"paths.log_dir={log_dir}"]
    return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(proc: subprocess.Popen, on_line: Callable[[str], None] = lambda line: None) -> subprocess.CompletedProcess:
    """Read the run's output line by line (`on_line` sees each as it comes) until it exits."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        on_line(line)
    proc.wait(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), "")


def _epoch_rows(run_dir: Path) -> set[int]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return {int(row["epoch"]) for row in csv.DictReader(f) if row.get("val/acc")}


@pytest.mark.slow
def test_runs_racing_on_a_new_local_store_all_log_into_it(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    overrides = [*TINY, "trainer.max_epochs=1", "logger=mlflow", "test=false"]
    assert not (tmp_path / "mlflow").exists()
    # two runs of the same command reach the store at the same moment, give or take a second
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    racing = []
    for log in logs:
        # output to files: a full pipe that is not being read would hold a process up
        with open(log, "w") as out:  # the process keeps its own copy of the file
            racing.append(_start(overrides, tmp_path, out))
    for proc, log in zip(racing, logs, strict=True):
        proc.wait(timeout=600)
        check_ok(subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), ""))
    # ten more in the store the race made: a sweep's parent run and its ten jobs
    check_ok(_finish(_start(["-m", *overrides, "seed=range(1,11)"], tmp_path)))

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image_classifier")
    runs = client.search_runs([experiment.experiment_id])
    jobs = [r for r in runs if r.data.tags.get("litforge.role") != "sweep"]
    assert len(jobs) == 12 and len(runs) == 13 and all(r.info.status == "FINISHED" for r in runs)
    assert all("val/acc" in r.data.metrics for r in jobs)
    assert len(run_dirs(tmp_path)) == 2


def _signal_server_on(server: subprocess.Popen, signals: dict[str, int]) -> Callable[[str], None]:
    """An `on_line` that sends the server's process group a signal when a line holds a given text."""

    def on_line(line: str) -> None:
        for text in [t for t in signals if t in line]:
            os.killpg(server.pid, signals.pop(text))

    return on_line


@pytest.mark.slow
def test_a_server_that_hangs_mid_training_gets_the_kept_writes_when_it_answers_again(
    mlflow_server: str, booting_server: tuple, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    server = booting_server[0]
    overrides = [*FIT, f"logger.mlflow.tracking_uri={mlflow_server}", "logger.mlflow.http_timeout=2"]
    # stopped, the server takes connections and never answers: each write waits out the timeout
    on_line = _signal_server_on(server, {"epoch 0 done": signal.SIGSTOP, "epoch 2 done": signal.SIGCONT})
    try:
        proc = _finish(_start(overrides, tmp_path), on_line)
    finally:
        os.killpg(server.pid, signal.SIGCONT)
    check_ok(proc)
    out = proc.stdout
    assert out.index("does not answer") < out.index(f"epoch {EPOCHS - 1} done"), "the outage began after training"
    assert "answers again after an outage" in out and "Traceback" not in out

    (run_dir,) = run_dirs(tmp_path)
    run_id = json.loads((run_dir / "tracker_runs.json").read_text())["mlflow"]
    run = MlflowClient(mlflow_server).get_run(run_id)
    history = MlflowClient(mlflow_server).get_metric_history(run_id, "val/acc")
    assert sorted(m.step for m in history) == sorted({m.step for m in history}) and len(history) == EPOCHS
    assert {"test/acc", "best/val/acc"} <= set(run.data.metrics) and run.info.status == "FINISHED"
    assert _epoch_rows(run_dir) == set(range(EPOCHS))


@pytest.mark.slow
def test_a_server_killed_mid_training_costs_the_run_seconds_and_no_results(
    mlflow_server: str, booting_server: tuple, tmp_path: Path
) -> None:
    overrides = [*FIT, f"logger.mlflow.tracking_uri={mlflow_server}"]
    start = time.monotonic()
    check_ok(_finish(_start(overrides, tmp_path / "before")))
    undisturbed = time.monotonic() - start

    server = booting_server[0]
    start = time.monotonic()
    proc = _finish(_start(overrides, tmp_path), _signal_server_on(server, {"epoch 0 done": signal.SIGKILL}))
    took = time.monotonic() - start
    check_ok(proc)
    out = proc.stdout
    assert out.index("does not answer") < out.index(f"epoch {EPOCHS - 1} done"), "the outage began after training"
    assert "has not answered since" in out and "log_batch x" in out and "Traceback" not in out
    assert took < undisturbed + 60, f"{took:.0f} s with the outage, {undisturbed:.0f} s without"

    (run_dir,) = run_dirs(tmp_path)
    assert "test/acc" in json.loads((run_dir / "metrics.json").read_text())
    assert _epoch_rows(run_dir) == set(range(EPOCHS))
    checkpoints = run_dir / "checkpoints"
    assert list(checkpoints.glob("best_epoch_*.ckpt")) and (checkpoints / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("logger.mlflow.http_timeout=2.5", "logger.mlflow.http_timeout=2.5: give a whole number of at least 1"),
        ("logger.mlflow.http_retries=11", "logger.mlflow.http_retries=11: give a whole number from 0 to 10"),
        ("logger.mlflow.retry_every=0", "logger.mlflow.retry_every=0: give a whole number of at least 1"),
    ],
)
def test_outage_settings_are_checked_before_training(override: str, message: str, tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*TINY, "logger=mlflow", override], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path)
