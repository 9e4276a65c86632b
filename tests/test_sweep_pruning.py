"""Pruning in an Optuna sweep, through the command line: hopeless trials stop early, end cleanly
as PRUNED and cost fewer epochs than the same search unpruned."""

import json
from pathlib import Path

import optuna
import pandas as pd

from hydra_plugins.litforge_optuna_sweeper.study import PRUNED_ATTR
from tests.helpers import check_ok, run_cli
from tests.test_sweep_workers import WORKER
from tests.test_sweeps import TINY


def epochs_run(sweep: Path) -> int:
    """The epochs every trial of a sweep trained, from its jobs' metrics.json."""
    return sum(int(json.loads(p.read_text())["last/epoch"]) + 1 for p in sweep.glob("*/metrics.json"))


def test_a_pruned_study_stops_hopeless_trials_and_spends_fewer_epochs(tmp_path: Path) -> None:
    sweep, storage, epochs, n_trials = tmp_path / "sweep", f"sqlite:///{tmp_path / 'study.db'}", 3, 5
    search = [
        "-m",
        *TINY,
        f"trainer.max_epochs={epochs}",
        # no early stop: every epoch a trial does not run is the pruner's doing
        "callbacks.early_stopping=null",
        "hparams_search=digits_optuna",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.sampler.seed=1",
        # learning rates from hopeless to fine, so the pruner has trials to stop
        "model.optimizer.lr=tag(log, interval(1e-6, 0.05))",
        "hydra.sweeper.pruner=successive_halving",
        # the jobs run in joblib's worker processes: they reach their trials through the storage
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep}",
    ]
    check_ok(run_cli("litforge.train", search, tmp_path))
    table = pd.read_csv(sweep / "trials.csv")
    pruned = table.loc[table["status"] == "PRUNED", "job"]
    assert len(pruned) and set(table["status"]) <= {"COMPLETED", "PRUNED"}, table[["job", "status", "value"]]
    assert epochs_run(sweep) < n_trials * epochs, "the unpruned study trains every epoch of every trial"
    # a pruned trial ended cleanly: its checkpoint and metrics are kept
    for job in pruned:
        assert (sweep / str(job) / "metrics.json").is_file()
        assert any((sweep / str(job) / "checkpoints").glob("*.ckpt"))
    assert f"n_pruned: {len(pruned)}" in (sweep / "optimization_results.yaml").read_text()
    # the trial itself carries the epoch it was pruned at (what a dashboard or a later script reads)
    trials = optuna.load_study(study_name="digits_cnn", storage=storage).get_trials()
    assert all(PRUNED_ATTR in t.user_attrs for t in trials if t.state.name == "PRUNED")
    assert all(len(t.intermediate_values) == 1 + t.user_attrs.get(PRUNED_ATTR, epochs - 1) for t in trials), (
        "every trial reported after each validation"
    )


def test_pruning_settings_are_checked_before_the_first_trial(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*WORKER, "hydra.sweeper.pruner=medain"], tmp_path)
    assert proc.returncode != 0
    assert "hydra.sweeper.pruner=medain: give one of none, median, hyperband, successive_halving" in proc.stderr
    assert not list(tmp_path.rglob("metrics.json"))
