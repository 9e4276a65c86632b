"""Resume under faults: a kill in the middle of an epoch, a moved or copied run directory, a path
with non-ASCII letters, two resumes at once, a new paths.log_dir with an MLflow store."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import QUIET, TINY_BACKBONE, check_ok, run_cli, run_dirs
from tests.test_resume import TINY, assert_ends_like, epochs_logged, start_training

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
CHECKPOINT_EVERY = 20
# a step logged every 3, and last.ckpt every 20 steps: in the middle of the first epoch
MID_EPOCH = [
    *QUIET,
    "~callbacks.save_figures",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
    "callbacks.model_summary=null",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=3",
    f"callbacks.last_checkpoint.every_n_train_steps={CHECKPOINT_EVERY}",
]
# 1257 training images in batches of 32: 40 steps an epoch; loaded by a worker process
DIGITS = [*MID_EPOCH, "data.batch_size=32", "data.num_workers=1"]
# 280 training texts in batches of 8: 35 steps an epoch
TEXT = [
    *MID_EPOCH,
    "experiment=text_clf_offline",
    "data.num_examples=400",
    "data.vocab_size=200",
    "data.max_length=16",
    "data.batch_size=8",
    *TINY_BACKBONE,
]


def loss_steps(run: Path) -> list[tuple[int, float]]:
    """(step, value) of every train/loss_step row of the run's metrics.csv, in file order."""
    with (run / "csv/metrics.csv").open(newline="") as file:
        return [(int(r["step"]), float(r["train/loss_step"])) for r in csv.DictReader(file) if r.get("train/loss_step")]


def kill_past_a_mid_epoch_checkpoint(overrides: list[str], log_dir: Path) -> tuple[Path, int, list[int]]:
    """SIGKILL once last.ckpt exists and steps past it are logged (they will be trained again).
    Returns the run, the step of its last.ckpt and the steps logged when it was killed."""
    proc = start_training(overrides, log_dir, env=ONE_THREAD)
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, f"training ended before it was killed:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
        runs = run_dirs(log_dir)
        ready = runs and (runs[0] / "checkpoints/last.ckpt").is_file() and (runs[0] / "csv/metrics.csv").is_file()
        if ready and any(step > CHECKPOINT_EVERY + 2 for step, _ in loss_steps(runs[0])):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(runs[0] / "checkpoints/last.ckpt", weights_only=True)
    return runs[0], saved["global_step"], [step for step, _ in loss_steps(runs[0])]


def check_mid_epoch_resume(overrides: list[str], tmp_path: Path, steps_per_epoch: int) -> None:
    # the uninterrupted run and the one to kill share the 2 cores; every part of both runs on one
    # thread, since another thread count sums in another order and the runs would differ by rounding
    whole = start_training(overrides, tmp_path / "whole", env=ONE_THREAD)
    run, step, logged = kill_past_a_mid_epoch_checkpoint(overrides, tmp_path / "killed")
    assert step % steps_per_epoch != 0, f"last.ckpt is at step {step}, an epoch end: the kill came too late"
    assert max(logged) >= step, "no step past the checkpoint was logged before the kill"
    _, stderr = whole.communicate(timeout=600)
    assert whole.returncode == 0, stderr[-3000:]
    (reference,) = run_dirs(tmp_path / "whole")

    check_ok(run_cli("litforge.train", [f"resume={run}"], tmp_path / "killed", env=ONE_THREAD))
    assert_ends_like(run, reference)
    resumed, expected = loss_steps(run), loss_steps(reference)
    assert [s for s, _ in resumed] == [s for s, _ in expected], "each logged step once, as in the uninterrupted run"
    assert [v for _, v in resumed] == pytest.approx([v for _, v in expected], rel=1e-5)


@pytest.mark.slow
def test_digits_killed_after_a_mid_epoch_checkpoint_resumes_like_an_uninterrupted_run(tmp_path: Path) -> None:
    check_mid_epoch_resume(DIGITS, tmp_path, steps_per_epoch=40)


@pytest.mark.slow
def test_text_killed_after_a_mid_epoch_checkpoint_resumes_like_an_uninterrupted_run(tmp_path: Path) -> None:
    check_mid_epoch_resume([*TEXT, f"paths.data_dir={tmp_path / 'data'}"], tmp_path, steps_per_epoch=35)


def resumed(run: Path, overrides: list[str], log_dir: Path) -> list[str]:
    """Resume the run; returns the checkpoints Lightning restored, in order (fit's, then test's),
    from the lines the resume added to the run's log."""
    log = run / "train.log"
    before = log.stat().st_size
    check_ok(run_cli("litforge.train", [f"resume={run}", *overrides], log_dir))
    prefix = "Restoring states from the checkpoint path at "
    added = log.read_text()[before:]
    return [line.split(prefix, 1)[1].strip() for line in added.splitlines() if prefix in line]


def test_a_copied_then_moved_run_directory_resumes_with_its_own_checkpoints(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*TINY, "trainer.max_epochs=1"], tmp_path / "first"))
    (original,) = run_dirs(tmp_path / "first")
    copy = tmp_path / "copy" / original.name
    shutil.copytree(original, copy)
    # the original's best checkpoint is unusable now: a resume that tested it would fail
    for best in (original / "checkpoints").glob("best_*.ckpt"):
        best.write_bytes(b"")

    # nothing left to train: the resume tests the best checkpoint, which must be the copy's own
    best = next(copy.glob("checkpoints/best_*.ckpt"))
    assert resumed(copy, [], tmp_path / "first") == [str(copy / "checkpoints/last.ckpt"), str(best)]

    # a real move: the directory its checkpoints were written in is gone
    moved = tmp_path / "moved" / copy.name
    moved.parent.mkdir()
    copy.rename(moved)
    fit, test = resumed(moved, ["trainer.max_epochs=2"], tmp_path / "first")
    assert fit == str(moved / "checkpoints/last.ckpt") and test.startswith(str(moved / "checkpoints/best_"))
    # the ranking went on from the one before the move: one best checkpoint is kept, not one from each side
    assert [str(p) for p in (moved / "checkpoints").glob("best_*.ckpt")] == [test]
    assert epochs_logged(moved) == [0, 1] and (moved / "metrics.json").is_file()


def train_cli(args: list[str], log_dir: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m litforge.train` with paths.log_dir quoted, as a user quotes a path with spaces or
    non-ASCII letters (Hydra's override grammar takes those only in quotes)."""
    return subprocess.Popen(
        [sys.executable, "-m", "litforge.train", *args, f"paths.log_dir='{log_dir}'"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **ONE_THREAD, **(env or {})},
    )


def finished(proc: subprocess.Popen) -> tuple[int, str]:
    _, stderr = proc.communicate(timeout=600)
    return proc.returncode, stderr


def test_a_run_under_a_non_ascii_path_resumes_once_when_two_resumes_start_together(tmp_path: Path) -> None:
    log_dir = tmp_path / "ü 1"
    code, stderr = finished(train_cli([*TINY, "trainer.max_epochs=1"], log_dir))
    assert code == 0, stderr[-3000:]
    (run,) = run_dirs(log_dir)

    resumes = [train_cli([f"resume={run}", "trainer.max_epochs=2"], log_dir) for _ in range(2)]
    (code_a, err_a), (code_b, err_b) = (finished(p) for p in resumes)
    assert sorted([code_a, code_b]) == [0, 2], f"{err_a[-2000:]}\n{err_b[-2000:]}"
    winner, refused = (resumes[0], err_b) if code_a == 0 else (resumes[1], err_a)
    assert f"is being resumed by process {winner.pid}" in refused and "Traceback" not in refused
    assert epochs_logged(run) == [0, 1], "the epoch the second resume would have trained is logged once"
    assert (run / "metrics.json").is_file()


def test_a_new_log_dir_at_resume_keeps_the_runs_mlflow_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_URI": ""}
    code, stderr = finished(train_cli([*TINY, "logger=mlflow", "trainer.max_epochs=1"], tmp_path / "logs", env))
    assert code == 0, stderr[-3000:]
    (run,) = run_dirs(tmp_path / "logs")
    run_id = json.loads((run / "tracker_runs.json").read_text())["mlflow"]
    (store,) = (tmp_path / "logs/mlflow").glob("*.db")

    resume = [f"resume={run}", "logger=mlflow", "trainer.max_epochs=2"]
    code, stderr = finished(train_cli(resume, tmp_path / "other", env))
    assert code == 0, stderr[-3000:]
    assert "a resumed run keeps its own paths.log_dir" in stderr
    assert not (tmp_path / "other").exists(), "nothing is created under the paths.log_dir given at resume"
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (only,) = client.search_runs(experiments)
    assert only.info.run_id == run_id and only.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "val/acc")
    assert len({m.step for m in history}) == len(history) == 2, "both epochs' validation, each once"
