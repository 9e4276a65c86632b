"""One test per entry of litforge.utils.compat, against the installed libraries: an upgrade that
moves a private API fails here, naming the library's version, the attribute and the entry to fix."""

from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from litforge.utils import compat


def moved(package: str, attribute: str, entry: str) -> str:
    return f"{package} {version(package)}: {attribute} moved or changed; update litforge.utils.compat.{entry}"


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    settings = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    return L.Trainer(accelerator="cpu", enable_model_summary=False, **settings, **kwargs)


class StepRecorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.logged: list[bool] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.logged.append(compat.logs_this_step(self.trainer))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_logs_this_step_follows_log_every_n_steps() -> None:
    trainer = quiet_trainer(max_steps=4, log_every_n_steps=2)
    connector = getattr(trainer, "_logger_connector", None)
    assert hasattr(connector, "should_update_logs"), moved(
        "lightning", "Trainer._logger_connector.should_update_logs", "logs_this_step"
    )
    module = StepRecorder()
    trainer.fit(module, DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=1))
    assert module.logged == [False, True, False, True], moved(
        "lightning", "_LoggerConnector.should_update_logs", "logs_this_step"
    )


def test_attached_trainer_is_none_until_a_trainer_takes_the_module() -> None:
    module = StepRecorder()
    assert compat.attached_trainer(module) is None, moved("lightning", "LightningModule.trainer", "attached_trainer")
    trainer = quiet_trainer()
    module.trainer = trainer
    assert compat.attached_trainer(module) is trainer, moved("lightning", "LightningModule.trainer", "attached_trainer")


def test_ddp_launcher_starts_hydra_ranks_with_the_given_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies.launchers import subprocess_script

    # the launcher writes these into os.environ; left there, every later command of this test process
    # would believe it is a rank of an external DDP launch and wait for its peers
    for key in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    started: list[tuple[list[str], str]] = []

    def popen(command: list[str], env: dict[str, str], cwd: str) -> None:
        started.append((command, cwd))

    monkeypatch.setattr(subprocess_script, "subprocess", SimpleNamespace(Popen=popen))
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    assert hasattr(subprocess_script, "_hydra_subprocess_cmd"), moved(
        "lightning", "strategies.launchers.subprocess_script._hydra_subprocess_cmd", "set_hydra_subprocess_cmd"
    )
    launcher = subprocess_script._SubprocessScriptLauncher(LightningEnvironment(), num_processes=2, num_nodes=1)

    original = compat.set_hydra_subprocess_cmd(lambda rank: ([f"rank-{rank}"], "job dir"))
    try:
        launcher._call_children_scripts()
    finally:
        compat.set_hydra_subprocess_cmd(original)
    assert started == [(["rank-1"], "job dir")], moved(
        "lightning", "strategies.launchers.subprocess_script._hydra_subprocess_cmd", "set_hydra_subprocess_cmd"
    )
    assert subprocess_script._hydra_subprocess_cmd is original


def test_job_result_gives_a_failed_jobs_exception_without_raising() -> None:
    from hydra.core.utils import JobReturn, JobStatus

    assert hasattr(JobReturn(), "_return_value"), moved("hydra-core", "JobReturn._return_value", "job_result")
    error = ValueError("the job's error")
    # set as Hydra's run_job sets them
    failed, completed = JobReturn(), JobReturn()
    failed.return_value, failed.status = error, JobStatus.FAILED
    completed.return_value, completed.status = 0.5, JobStatus.COMPLETED
    assert compat.job_result(failed) is error, moved("hydra-core", "JobReturn._return_value", "job_result")
    assert compat.job_result(completed) == 0.5, moved("hydra-core", "JobReturn._return_value", "job_result")


def test_basic_sweeper_is_hydras_default_sweeper() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    from litforge.utils.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/sweeper=basic"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == compat.BASIC_SWEEPER, moved("hydra-core", "BasicSweeper", "BASIC_SWEEPER")
    assert get_class(compat.BASIC_SWEEPER).__name__ == "BasicSweeper"


@pytest.mark.filterwarnings("ignore:Experiment logs directory")
def test_metrics_writer_keeps_an_existing_metrics_file(tmp_path: Path) -> None:
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    probe = ExperimentWriter(log_dir=str(tmp_path / "probe"))
    assert hasattr(probe, "_fs"), moved("lightning", "ExperimentWriter._fs", "metrics_writer_base")
    assert hasattr(ExperimentWriter, "_check_log_dir_exists"), moved(
        "lightning", "ExperimentWriter._check_log_dir_exists", "metrics_writer_base"
    )
    metrics = tmp_path / ExperimentWriter.NAME_METRICS_FILE
    metrics.write_text("step,x\n0,1.0\n")

    class Writer(compat.metrics_writer_base()):
        def found_log_dir(self) -> None:
            self.found = self.fs.isfile(self.metrics_file_path)

    writer = Writer(log_dir=str(tmp_path))
    assert getattr(writer, "found", False) and metrics.read_text() == "step,x\n0,1.0\n", moved(
        "lightning", "ExperimentWriter._check_log_dir_exists / _fs", "metrics_writer_base"
    )
    ExperimentWriter(log_dir=str(tmp_path))
    # were Lightning to keep the file itself, metrics_writer_base would be needless
    assert not metrics.exists(), moved("lightning", "ExperimentWriter._check_log_dir_exists", "metrics_writer_base")


def test_cached_csv_experiment_is_the_writer_lightning_logs_and_saves_with(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    logger = CSVLogger(tmp_path, name="run", version=0)
    assert hasattr(logger, "_experiment"), moved("lightning", "CSVLogger._experiment", "cached_csv_experiment")
    writer = compat.cached_csv_experiment(logger, lambda: ExperimentWriter(log_dir=logger.log_dir))
    assert logger.experiment is writer, moved("lightning", "CSVLogger._experiment", "cached_csv_experiment")
    assert compat.cached_csv_experiment(logger, lambda: pytest.fail("built twice")) is writer
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    saved = Path(writer.metrics_file_path)
    assert saved.is_file() and "x" in saved.read_text(), moved(
        "lightning", "CSVLogger._experiment (read by finalize)", "cached_csv_experiment"
    )


def test_mlflow_entries_read_and_replace_the_loggers_client_and_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    uri = "http://127.0.0.1:9"  # never contacted: the logger's client is replaced before any write
    logger = MLFlowLogger(tracking_uri=uri, run_id="run-1")
    for attribute in ("_mlflow_client", "_run_id", "_tracking_uri"):
        assert hasattr(logger, attribute), moved("lightning", f"MLFlowLogger.{attribute}", "mlflow_* entries")
    assert isinstance(compat.mlflow_client(logger), MlflowClient), moved(
        "lightning", "MLFlowLogger._mlflow_client", "mlflow_client"
    )
    assert compat.mlflow_run_id(logger) == "run-1", moved("lightning", "MLFlowLogger._run_id", "mlflow_run_id")
    assert compat.mlflow_tracking_uri(logger) == uri, moved(
        "lightning", "MLFlowLogger._tracking_uri", "mlflow_tracking_uri"
    )

    batches: list[dict[str, Any]] = []
    client = SimpleNamespace(
        get_run=lambda run_id: SimpleNamespace(info=SimpleNamespace(experiment_id="0")),
        log_batch=lambda **kwargs: batches.append(kwargs),
    )
    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: None)
    compat.set_mlflow_client(logger, client)
    logger.log_metrics({"x": 1.0}, step=0)
    assert compat.mlflow_client(logger) is client
    assert [b["run_id"] for b in batches] == ["run-1"], moved(
        "lightning", "MLFlowLogger._mlflow_client", "set_mlflow_client"
    )


def test_optuna_entries_give_the_heartbeat_interface_and_trial_ids(tmp_path: Path) -> None:
    import optuna

    base = compat.optuna_heartbeat_base()
    for method in ("record_heartbeat", "_get_stale_trial_ids", "get_heartbeat_interval"):
        assert hasattr(base, method), moved("optuna", f"BaseHeartbeat.{method}", "optuna_heartbeat_base")
    assert issubclass(optuna.storages.RDBStorage, base), moved("optuna", "BaseHeartbeat", "optuna_heartbeat_base")

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.optuna_trial_id(trial) == compat.optuna_trial_id(frozen), moved(
        "optuna", "Trial._trial_id", "optuna_trial_id"
    )
    assert storage.get_trial(compat.optuna_trial_id(trial)).number == trial.number
