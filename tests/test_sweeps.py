"""Hydra multiruns and DDP (simulated on CPU with gloo), alone and together."""

import re
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

TINY = [
    *QUIET,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.model_summary=null",
]
RANK_LINE = re.compile(r"rank (\d) of (\d) runs config (\w+) in (\S+)")


def configs_by_job(output: str) -> dict[str, dict[int, set[str]]]:
    """For each job directory, the config digests each rank reported."""
    jobs: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for rank, _, digest, job in RANK_LINE.findall(output):
        jobs[job][int(rank)].add(digest)
    return jobs


def sweep_dir(log_dir: Path) -> Path:
    (only,) = (log_dir / "train" / "multiruns").iterdir()
    return only


@pytest.mark.slow
def test_ddp_sim_single_run_has_one_run_dir_and_one_set_of_checkpoints(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", [*TINY, "trainer=ddp_sim"], tmp_path, timeout=300)
    check_ok(proc)
    (run,) = run_dirs(tmp_path)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best_epoch_001.ckpt", "last.ckpt"]
    jobs = configs_by_job(proc.stdout + proc.stderr)
    assert list(jobs) == [str(run)]
    assert set(jobs[str(run)]) == {0, 1} and len(jobs[str(run)][0] | jobs[str(run)][1]) == 1
    assert [p.name for p in run.glob("*.log")] == ["train.log"], "only rank 0 writes the log file"


@pytest.mark.slow
def test_ddp_sim_inside_an_optuna_sweep_keeps_each_trials_ranks_together(tmp_path: Path) -> None:
    overrides = ["-m", *TINY, "hparams_search=digits_optuna", "trainer=ddp_sim", "hydra.sweeper.n_trials=2"]
    proc = run_cli("litforge.train", overrides, tmp_path, timeout=300)
    check_ok(proc)
    sweep = sweep_dir(tmp_path)
    trials = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in trials] == ["0", "1"]
    jobs = configs_by_job(proc.stdout + proc.stderr)
    assert sorted(jobs) == [str(t) for t in trials], "ranks wrote outside their trial's folder"
    digests = []
    for trial in trials:
        ranks = jobs[str(trial)]
        assert set(ranks) == {0, 1}
        assert ranks[0] == ranks[1] and len(ranks[0]) == 1, f"ranks of {trial.name} ran different configs"
        digests.append(next(iter(ranks[0])))
        # a completed sweep job keeps its best checkpoint; its last.ckpt, only a resume reads, is removed
        assert [p.name for p in (trial / "checkpoints").glob("*.ckpt")] == ["best_epoch_001.ckpt"]
    assert digests[0] != digests[1], "the two trials should differ in their hyperparameters"
    assert (sweep / "optimization_results.yaml").is_file()
    trials_csv = pd.read_csv(sweep / "trials.csv")
    assert trials_csv["status"].tolist() == ["COMPLETED", "COMPLETED"]
    assert trials_csv["value"].between(0, 1).all()


def test_a_failing_job_is_a_failed_trial_and_a_stored_study_resumes(tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = [
        "-m",
        *TINY,
        "hparams_search=digits_optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.sampler.seed=3",
        "data.batch_size=choice(0,32)",
    ]
    proc = run_cli("litforge.train", [*overrides, "hydra.sweeper.n_trials=4"], tmp_path)
    check_ok(proc)
    trials = pd.read_csv(sweep_dir(tmp_path) / "trials.csv")
    assert len(trials) == 4
    batch_zero = trials["overrides"].str.contains(r"data\.batch_size=0(?:\s|$)")
    assert batch_zero.any() and (~batch_zero).any(), "the seed should draw both batch sizes"
    assert (trials.loc[batch_zero, "status"] == "FAILED").all()
    assert (trials.loc[~batch_zero, "status"] == "COMPLETED").all()
    assert "data.batch_size=0: give a batch size of at least 1" in proc.stdout + proc.stderr

    # an interrupted sweep leaves a trial running; rerunning with the same storage resumes the study
    study = optuna.load_study(study_name="digits_cnn", storage=storage)
    first_params = [t.params for t in study.trials]
    study.ask()
    proc = run_cli("litforge.train", [*overrides, "hydra.sweeper.n_trials=6"], tmp_path)
    check_ok(proc)
    study = optuna.load_study(study_name="digits_cnn", storage=storage)
    states = [t.state.name for t in study.trials]
    assert len(states) == 6 and states[4] == "FAIL", "the trial left running should be marked failed"
    assert states[:4] == ["FAIL" if zero else "COMPLETE" for zero in batch_zero]
    assert states[5] in {"COMPLETE", "FAIL"} and study.trials[5].params not in first_params
    (resumed,) = (p for p in (tmp_path / "train" / "multiruns").iterdir() if (p / "5").is_dir())
    assert sorted(p.name for p in resumed.iterdir() if p.is_dir()) == ["5"], "job folders follow trial numbers"
    assert "trial 4 of study digits_cnn was left running: marked failed" in proc.stdout + proc.stderr


def test_joblib_launcher_trains_two_optuna_trials_at_once_on_two_objectives(tmp_path: Path) -> None:
    overrides = [
        "-m",
        *TINY,
        "hparams_search=digits_optuna",
        "hydra/sweeper/sampler=nsgaii",
        "optimized_metric=[val/acc,val/loss]",
        "hydra.sweeper.direction=[maximize,minimize]",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ]
    proc = run_cli("litforge.train", overrides, tmp_path)
    check_ok(proc)
    sweep = sweep_dir(tmp_path)
    for job in ["0", "1"]:
        assert (sweep / job / "metrics.json").is_file()
        assert list((sweep / job / "checkpoints").glob("best_*.ckpt"))
        assert not (sweep / job / "checkpoints/last.ckpt").exists(), "a completed sweep job keeps no last.ckpt"
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.directions == ["maximize", "minimize"] and results.n_complete == 2
    for trial in results.best_trials:
        accuracy, loss = trial["values"]
        assert 0 <= accuracy <= 1 and loss > 0


def test_basic_sweeper_grid_gives_one_folder_per_job(tmp_path: Path) -> None:
    proc = run_cli("litforge.train", ["-m", *TINY, "model/net=mlp,cnn", "model.optimizer.lr=0.001,0.01"], tmp_path)
    check_ok(proc)
    jobs = sorted(p.name for p in sweep_dir(tmp_path).iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    trials = pd.read_csv(sweep_dir(tmp_path) / "trials.csv")
    assert trials["status"].tolist() == ["COMPLETED"] * 4
    assert "model/net=mlp model.optimizer.lr=0.001" in trials["overrides"].tolist()[0]


def test_slurm_launcher_follows_the_trainer_layout() -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from litforge.utils.config import CONFIG_DIR

    overrides = [
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.num_nodes=3",
        "hydra.launcher.partition=gpu",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (3, 2, 2)
    assert launcher["partition"] == "gpu"


def test_a_sweep_whose_trials_all_fail_exits_non_zero_with_its_results(tmp_path: Path) -> None:
    overrides = ["-m", *QUIET, "hparams_search=digits_optuna", "hydra.sweeper.n_trials=1", "data.batch_size=choice(0)"]
    proc = run_cli("litforge.train", overrides, tmp_path)
    assert proc.returncode == 1
    assert "no trial of study digits_cnn completed; each failed job's error is in its log under" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert pd.read_csv(sweep_dir(tmp_path) / "trials.csv")["status"].tolist() == ["FAILED"]


def test_a_search_space_key_the_config_lacks_is_refused_before_training(tmp_path: Path) -> None:
    overrides = ["-m", *QUIET, "hparams_search=digits_optuna", "model.optimizer.lrr=choice(0.1,0.2)"]
    proc = run_cli("litforge.train", overrides, tmp_path)
    assert proc.returncode == 1
    assert "Could not override 'model.optimizer.lrr'" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(sweep_dir(tmp_path).glob("*/checkpoints"))
