"""Sweeps at scale, through the command line: several workers on one stored Optuna study (SQLite,
a journal file, PostgreSQL) share its trials, and a killed worker's trial is failed by heartbeat
and retried."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from hydra_plugins.litforge_optuna_sweeper.study import DIR_ATTR, WORKER_ATTR, make_storage
from tests.test_sweeps import TINY

N_TRIALS = 5
WORKER = [
    "-m",
    *TINY,
    "hparams_search=digits_optuna",
    "hydra.sweeper.study_name=shared",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=4",
    f"hydra.sweeper.n_trials={N_TRIALS}",
]


def start_worker(storage: str, sweep: Path, log_dir: Path, name: str, extra: list[str]) -> subprocess.Popen:
    """One sweep worker in its own process group (so that it and its jobs can be killed at once)."""
    command = [
        sys.executable,
        "-m",
        "litforge.train",
        *WORKER,
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep}",
        f"paths.log_dir={log_dir}",
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # logger=mlflow tracks to the local store under log_dir, which the test reads
    env.pop("MLFLOW_TRACKING_URI", None)
    out = open(log_dir / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(params=["sqlite", "journal", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.journal'}"
    return request.getfixturevalue("postgres_url")


def running_trial(storage: str) -> tuple[int, Path] | None:
    """The pid of a worker whose trial has started training, and that trial's folder."""
    try:
        study = optuna.load_study(study_name="shared", storage=make_storage(storage, None, None, 0))
    except KeyError:
        return None
    for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        folder = Path(trial.user_attrs.get(DIR_ATTR, "/nonexistent"))
        if WORKER_ATTR in trial.user_attrs and (folder / ".hydra" / "config.yaml").is_file():
            return int(trial.user_attrs[WORKER_ATTR].rpartition(":")[2]), folder
    return None


def test_three_workers_share_one_study_and_a_killed_workers_trial_is_retried(storage: str, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # on the journal storage the workers also track to one MLflow store: one parent run for the study
    tracked = storage.startswith("journal:")
    workers = {}
    for i in range(3):
        worker = start_worker(storage, sweep, tmp_path, f"worker{i}", ["logger=mlflow"] if tracked else [])
        workers[worker.pid] = (i, worker)
    # one worker is killed while its trial trains (the job has written its config, not its results)
    found: list = []

    def a_trial_trains() -> bool:
        if all(worker.poll() is not None for _, worker in workers.values()):
            logs = "\n".join((tmp_path / f"worker{i}.out").read_text()[-1500:] for i in range(3))
            raise AssertionError(f"every worker exited before a trial trained:\n{logs}")
        found.append(running_trial(storage))
        return bool(found[-1])

    wait_for(a_trial_trains, 180, "a trial to start training")
    pid, killed_dir = found[-1]
    os.killpg(pid, signal.SIGKILL)
    workers.pop(pid)[1].wait()
    for i, worker in workers.values():
        assert worker.wait(timeout=300) == 0, (tmp_path / f"worker{i}.out").read_text()[-3000:]

    study = optuna.load_study(study_name="shared", storage=make_storage(storage, None, None, 0))
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == N_TRIALS and states.count("FAIL") == 1, states
    (killed,) = (t for t in trials if t.state.name == "FAIL")
    assert killed.user_attrs[DIR_ATTR] == str(killed_dir.resolve())
    (retry,) = (t for t in trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state.name == "COMPLETE" and retry.params == killed.params, "retried once, with its parameters"
    dirs = [t.user_attrs[DIR_ATTR] for t in trials]
    assert len(set(dirs)) == len(trials), "each trial has its own folder"
    assert all((Path(t.user_attrs[DIR_ATTR]) / "metrics.json").is_file() for t in trials if t.state.name == "COMPLETE")
    finished_by = {t.user_attrs[WORKER_ATTR] for t in trials if t.state.name == "COMPLETE"}
    assert len(finished_by) == 2, "the two surviving workers shared the work"

    table = pd.read_csv(sweep / "trials.csv")
    assert sorted(table["job"]) == [t.number for t in trials], "the table covers the whole study"
    failed = table[table["status"] == "FAILED"]
    assert failed["error"].str.contains(f"retried as trial {retry.number}").all() and len(failed) == 1
    results = (sweep / "optimization_results.yaml").read_text()
    assert "n_retried: 1" in results and f"n_complete: {N_TRIALS}" in results
    if tracked:
        check_one_parent_run(tmp_path, sweep, trials)


def check_one_parent_run(log_dir: Path, sweep: Path, trials: list) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{log_dir / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if r.data.tags.get("litforge.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(children) >= len(finished), "every worker's jobs are children of the one parent"
    best = max(t.value for t in finished)
    assert parent.data.metrics["val/acc"] == pytest.approx(best), "the parent's best covers the whole study"
