"""Every private Lightning, Hydra and MLflow API litforge relies on, in one place.

Each entry exists because no public API does the same job; tests/utils/test_compat.py holds a test
per entry against the installed libraries, so an upgrade that moves one fails there, by name, and
not somewhere inside a run. Heavy libraries are imported inside the functions: the entry points
import this module before a run starts.
"""

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning.pytorch as L
    from hydra.core.utils import JobReturn
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

# Hydra's default sweeper, as its config names it; the class lives in a private module
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"

SubprocessCmd = Callable[[int], tuple[Sequence[str], str]]


def logs_this_step(trainer: "L.Trainer") -> bool:
    """Whether the loggers write the metrics logged on the current training step. Lightning's own
    answer: global_step is not the same count (several optimisers, restored loops)."""
    return trainer._logger_connector.should_update_logs


def attached_trainer(module: "L.LightningModule") -> "L.Trainer | None":
    """The module's Trainer, or None where it has none (`module.trainer` raises then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def set_hydra_subprocess_cmd(command: SubprocessCmd) -> SubprocessCmd:
    """Make Lightning's DDP launcher start ranks 1..N-1 of a Hydra run with `command(local_rank)`,
    which returns (argv, cwd); returns the function it replaces, to put back afterwards."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    previous = subprocess_script._hydra_subprocess_cmd
    subprocess_script._hydra_subprocess_cmd = command
    return previous


def job_result(job_return: "JobReturn") -> Any:
    """A Hydra job's returned value, or the exception a failed job raised. The public
    `return_value` re-raises that exception and writes to stderr."""
    return job_return._return_value


@functools.cache
def metrics_writer_base() -> type["ExperimentWriter"]:
    """Lightning's CSV ExperimentWriter, less its deletion of an existing metrics file: a subclass
    overrides `found_log_dir` (run once from `__init__`) and reaches the file through `fs`."""
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class MetricsWriter(ExperimentWriter):
        @property
        def fs(self) -> Any:
            """The fsspec filesystem the writer writes `metrics_file_path` with."""
            return self._fs

        def _check_log_dir_exists(self) -> None:
            self.found_log_dir()

        def found_log_dir(self) -> None:
            """Where Lightning would delete a metrics file the log dir already holds."""

    return MetricsWriter


def cached_csv_experiment(logger: "CSVLogger", make: Callable[[], "ExperimentWriter"]) -> "ExperimentWriter":
    """`CSVLogger.experiment` with the writer `make` builds: Lightning keeps it in `_experiment`,
    which `finalize` reads too."""
    from lightning.fabric.utilities.cloud_io import get_filesystem

    if logger._experiment is None:
        get_filesystem(logger.root_dir).makedirs(logger.root_dir, exist_ok=True)
        logger._experiment = make()
    return logger._experiment


def mlflow_client(logger: "MLFlowLogger") -> Any:
    """The logger's MlflowClient, without `experiment`'s side effect of creating the run."""
    return logger._mlflow_client


def set_mlflow_client(logger: "MLFlowLogger", client: Any) -> None:
    """The client every later write of the logger goes through."""
    logger._mlflow_client = client


def mlflow_run_id(logger: "MLFlowLogger") -> str | None:
    """The run's id, None before it exists; the public `run_id` would create the run."""
    return logger._run_id


def mlflow_tracking_uri(logger: "MLFlowLogger") -> str:
    """The tracking URI the logger writes to."""
    return logger._tracking_uri


def optuna_heartbeat_base() -> type:
    """Optuna's heartbeat interface (private module): a storage that implements it gets failed and
    retried trials from `optuna.storages.fail_stale_trials`; its `_get_stale_trial_ids` is the
    private method that lists them. Optuna implements it for its database storage only."""
    from optuna.storages._heartbeat import BaseHeartbeat

    return BaseHeartbeat


def optuna_trial_id(trial: Any) -> int:
    """The storage's id of a trial (FrozenTrial or Trial), which the storage's methods take."""
    return trial._trial_id
