"""Checkpoints and SIGTERM under the faults a long run meets: kills during saves, step-wise saving,
a scheduler's SIGTERM in fit, in test and under DDP."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

# digits with a wide classifier head: 13 MB checkpoints, so a save takes a while to write
BIG_HEAD = [*QUIET, "~callbacks.save_figures", "model.net.hidden_size=4096", "trainer.limit_val_batches=2"]
TEMPORARY = ".*.tmp-*"


def start(module: str, overrides: list[str], log_dir: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    """The command line in its own process group (so a test can signal all of it), output to `out`."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *overrides, f"paths.log_dir={log_dir}"],
        stdout=out.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )


def wait_until(
    condition: Callable[[], bool], proc: subprocess.Popen, out: Path, what: str, every: float = 0.01
) -> None:
    deadline = time.monotonic() + 180
    while not condition():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}:\n{out.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} after 180 s"
        time.sleep(every)


def the_run(log_dir: Path, proc: subprocess.Popen, out: Path) -> Path:
    wait_until(lambda: bool(run_dirs(log_dir)), proc, out, "run directory")
    (run,) = run_dirs(log_dir)
    return run


def assert_every_checkpoint_loads(folder: Path) -> None:
    for path in sorted(folder.glob("*.ckpt")):
        try:
            torch.load(path, weights_only=True)
        except Exception as err:  # noqa: BLE001 - the assertion names whatever made it unreadable
            pytest.fail(f"{path.name} ({path.stat().st_size} bytes) does not load: {type(err).__name__}: {err}")


def other_file_system_tmpdir(tmp_path: Path) -> Path:
    """A fresh folder on a file system other than tmp_path's (a tmpfs), to serve as $TMPDIR."""
    for root in (Path("/dev/shm"), Path("/run/user") / str(os.getuid())):
        if root.is_dir() and os.access(root, os.W_OK) and root.stat().st_dev != tmp_path.stat().st_dev:
            folder = root / f"litforge-test-{os.getpid()}-{tmp_path.name}"
            folder.mkdir()
            return folder
    pytest.skip("no writable file system other than the test folder's (e.g. /dev/shm) to put $TMPDIR on")


@pytest.fixture
def foreign_tmpdir(tmp_path: Path):
    folder = other_file_system_tmpdir(tmp_path)
    yield folder
    shutil.rmtree(folder)


def files_in(folder: Path) -> list[Path]:
    # torch keeps a cache folder in $TMPDIR (torchinductor_<user>); a save's temporary is a file
    return [p for p in folder.iterdir() if p.is_file()]


def kill_during_a_save(proc: subprocess.Popen, out: Path, checkpoints: Path, tmpdir: Path) -> None:
    """SIGKILL at a random moment of training, the first one after it at which `proc` writes a save
    (its own temporary: one a killed predecessor left stays until the resume loads last.ckpt)."""
    saving = lambda: any(checkpoints.glob(f".*.tmp-*-{proc.pid}")) or bool(files_in(tmpdir))  # noqa: E731
    wait_until(saving, proc, out, "a checkpoint save", every=0.001)
    time.sleep(random.uniform(0.0, 1.0))
    wait_until(saving, proc, out, "a checkpoint save", every=0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_during_saves_with_tmpdir_on_another_file_system_leaves_whole_checkpoints(
    tmp_path: Path, foreign_tmpdir: Path
) -> None:
    overrides = [*BIG_HEAD, "trainer.max_epochs=2", "callbacks.last_checkpoint.every_n_train_steps=1"]
    env = {"TMPDIR": str(foreign_tmpdir)}
    out = tmp_path / "attempt-0.out"
    proc = start("litforge.train", overrides, tmp_path, out, env)
    run = the_run(tmp_path, proc, out)
    checkpoints = run / "checkpoints"
    wait_until((checkpoints / "last.ckpt").is_file, proc, out, "last.ckpt")
    stale = []
    for attempt in range(3):
        if attempt:
            out = tmp_path / f"attempt-{attempt}.out"
            proc = start("litforge.train", [f"resume={run}"], tmp_path, out, env)
        kill_during_a_save(proc, out, checkpoints, foreign_tmpdir)
        assert_every_checkpoint_loads(checkpoints)
        assert not files_in(foreign_tmpdir), "a killed save left its temporary file in $TMPDIR"
        stale += list(checkpoints.glob(TEMPORARY))

    assert stale, "no kill landed in the middle of a save: the cleanup of their temporaries went untested"
    check_ok(run_cli("litforge.train", [f"resume={run}"], tmp_path, env=env))
    assert not list(checkpoints.glob(TEMPORARY)), "the resumed run kept the temporaries of the killed saves"
    assert_every_checkpoint_loads(checkpoints)
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2 * 20


def test_every_n_train_steps_still_saves_last_at_every_epoch_end(tmp_path: Path) -> None:
    # 7 steps an epoch, a save every 3: the steps-only trigger would leave last.ckpt at step 12 of 14
    overrides = [*BIG_HEAD, "trainer.max_epochs=2", "trainer.limit_train_batches=7", "trainer.limit_test_batches=2"]
    check_ok(run_cli("litforge.train", [*overrides, "callbacks.last_checkpoint.every_n_train_steps=3"], tmp_path))
    (run,) = run_dirs(tmp_path)
    last = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 14), "last.ckpt must hold the end of the run"
    states = {key: state for key, state in last["callbacks"].items() if key.startswith("LastCheckpoint")}
    (steps,) = [state for key, state in states.items() if "'every_n_train_steps': 3" in key]
    assert steps["best_model_path"].endswith("last.ckpt"), "the every-3-steps saves did not happen"


# 158 steps an epoch on digits: long enough to be stopped in the middle of one
STEPPED = [*QUIET, "~callbacks.save_figures", "data.batch_size=8", "callbacks.early_stopping=null"]
RESUMABLE = re.compile(r"it is resumable: (python -m litforge\.train .+)$", re.MULTILINE)


def test_sigterm_in_fit_exits_143_with_the_command_that_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run.out"
    proc = start("litforge.train", [*STEPPED, "trainer.max_epochs=3"], tmp_path, out)
    run = the_run(tmp_path, proc, out)
    wait_until((run / "checkpoints/last.ckpt").is_file, proc, out, "last.ckpt")
    first = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"]
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, out.read_text()[-3000:]
    saved = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"]
    assert saved > first, "SIGTERM should save the steps done since the last epoch end"
    assert not (run / "metrics.json").exists()
    (command,) = RESUMABLE.findall((run / "train.log").read_text())
    assert command == f"python -m litforge.train resume={run}"

    argv = [sys.executable, *command.split()[1:]]
    check_ok(subprocess.run(argv, capture_output=True, text=True, timeout=300))
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 3 * 158
    assert (run / "metrics.json").is_file()


def test_sigterm_in_test_exits_143(tmp_path: Path) -> None:
    # 2 training steps, then 270 test batches of one image: a test stage of a few seconds
    overrides = [*STEPPED, "data.batch_size=1", "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    overrides += ["trainer.limit_val_batches=2"]
    out = tmp_path / "run.out"
    proc = start("litforge.train", overrides, tmp_path, out)
    run = the_run(tmp_path, proc, out)
    wait_until(lambda: "Loaded model weights" in out.read_text(), proc, out, "the test stage")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, out.read_text()[-3000:]
    assert not (run / "metrics.json").exists(), "a test cut short must not report metrics"
    (command,) = RESUMABLE.findall((run / "train.log").read_text())
    assert command == f"python -m litforge.train resume={run}"

    # fit is done: the resume only tests
    check_ok(subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, timeout=300))
    assert "test/acc" in json.loads((run / "metrics.json").read_text())


def processes_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            alive.append(int(entry.name))
    return alive


def assert_all_stop(proc: subprocess.Popen, out: Path, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while processes_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = processes_in_group(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes {left} still ran {within} s after SIGTERM:\n{out.read_text()[-3000:]}"
    assert proc.wait(timeout=5) == 143, out.read_text()[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the run's processes in /proc")
def test_ddp_sigterm_to_the_main_process_or_to_all_stops_every_rank_within_seconds(tmp_path: Path) -> None:
    out = tmp_path / "run.out"
    proc = start("litforge.train", [*STEPPED, "trainer=ddp_sim", "trainer.max_epochs=30"], tmp_path, out)
    run = the_run(tmp_path, proc, out)
    last = run / "checkpoints/last.ckpt"
    wait_until(last.is_file, proc, out, "last.ckpt")
    assert len(processes_in_group(proc.pid)) == 2, "trainer=ddp_sim runs 2 processes"
    time.sleep(0.5)
    # Lightning's launcher started rank 1: only the main process gets this one
    proc.send_signal(signal.SIGTERM)
    assert_all_stop(proc, out)
    step, saved_at = torch.load(last, weights_only=True)["global_step"], last.stat().st_mtime_ns
    assert step > 79, "SIGTERM should save the steps done since the last epoch end (79 a rank)"

    # as SLURM does: every process gets the signal
    out = tmp_path / "resumed.out"
    proc = start("litforge.train", [f"resume={run}"], tmp_path, out)
    wait_until(lambda: last.stat().st_mtime_ns > saved_at, proc, out, "a save after the resume")
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    assert_all_stop(proc, out)
    assert torch.load(last, weights_only=True)["global_step"] > step
    assert not list(last.parent.glob(TEMPORARY))


@pytest.mark.parametrize("config_name", ["train", "eval"])
@pytest.mark.parametrize("trainer", ["default", "ddp_sim"])
def test_train_and_eval_trainers_write_checkpoints_through_the_atomic_plugin(
    tmp_path: Path, config_name: str, trainer: str
) -> None:
    from litforge.assembly import instantiate_trainer
    from litforge.utils.checkpoint_io import AtomicCheckpointIO

    cfg = compose_config([f"trainer={trainer}"], config_name, log_dir=tmp_path)
    assert isinstance(instantiate_trainer(cfg.trainer, [], []).strategy.checkpoint_io, AtomicCheckpointIO)
