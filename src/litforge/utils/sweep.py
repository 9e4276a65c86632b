"""A results table for every multirun, whatever the sweeper or launcher: `<sweep dir>/trials.csv`."""

import csv
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hydra_plugins.litforge_optuna_sweeper.study import TRIAL_ENV
from litforge.utils.compat import BASIC_SWEEPER, job_result
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

FIELDS = ["job", "status", "value", "error", "overrides"]
# the sweeps of this process whose jobs failed under the basic sweeper: main() exits non-zero for them
_failed_sweeps: list[str] = []


def _write_table(sweep_dir: Path) -> list[dict[str, Any]]:
    """trials.csv from the jobs' job.json files."""
    records = sorted((json.loads(p.read_text()) for p in sweep_dir.glob("*/job.json")), key=lambda r: r["job"])
    if records:
        write_rows(sweep_dir, records, FIELDS)
    return records


def write_rows(sweep_dir: Path, records: list[dict[str, Any]], fields: list[str]) -> None:
    """trials.csv, replaced whole so a reader never sees half a table."""
    with tempfile.NamedTemporaryFile("w", dir=sweep_dir, prefix=".trials.", suffix=".csv", delete=False) as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "overrides": " ".join(record["overrides"])})
    os.replace(f.name, sweep_dir / "trials.csv")


def job_record(job_dir: Path) -> dict[str, Any] | None:
    """What a job of a sweep left in its folder (status, returned value, error, overrides), if it ended."""
    path = job_dir / "job.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _study_sweep(config: DictConfig) -> bool:
    """The Optuna sweeper writes trials.csv itself, from the study (every worker's trials)."""
    return str(config.hydra.sweeper.get("_target_", "")).endswith("OptunaSweeper")


def _describe(error: BaseException) -> str:
    """A user's mistake by its message alone; a crash also by the exception's type."""
    return str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"


class SweepResults(Callback):
    """Each job leaves `job.json` (overrides, status, returned value, error) in its folder and
    refreshes the table, so a sweep that is killed still has one; at the end of the sweep it is
    written once more from all of them. Jobs write their own file, so parallel launchers need no
    coordination.

    Hydra's basic sweeper re-raises a failed job's error once its batch has run: the sweep would
    end there with a traceback and without the end-of-sweep callbacks (this table, the MLflow
    parent run). Under it a failure is recorded here instead, the sweep runs its other jobs, and
    `exit_if_jobs_failed` gives the exit status. Other sweepers (Optuna) judge failures themselves.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        failed = job_return.status == JobStatus.FAILED
        error = job_result(job_return) if failed else None
        record = {
            "job": config.hydra.job.num,
            "status": job_return.status.name,
            "value": None if failed else job_return.return_value,
            "error": _describe(error) if failed else None,
            # the link to an Optuna trial is the sweeper's, not a setting of the job
            "overrides": [o for o in job_return.overrides or [] if TRIAL_ENV not in o],
        }
        Path(config.hydra.runtime.output_dir, "job.json").write_text(json.dumps(record, default=str) + "\n")
        if not _study_sweep(config):
            _write_table(Path(config.hydra.sweep.dir))
        if not failed:
            return
        if not isinstance(error, UserError):
            # a crash, not a mistake in the input (those are logged where they are raised)
            log.error("job %s failed:", record["job"], exc_info=error)
        if config.hydra.sweeper.get("_target_") == BASIC_SWEEPER:
            # recorded above; what the basic sweeper gets back must not re-raise (class docstring)
            job_return.status, job_return.return_value = JobStatus.COMPLETED, None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if _study_sweep(config):
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        records = _write_table(sweep_dir)
        if not records:
            return
        failed = [r for r in records if r["status"] == "FAILED"]
        log.info(
            "sweep: %d of %d jobs completed; results in %s",
            len(records) - len(failed),
            len(records),
            sweep_dir / "trials.csv",
        )
        if failed and config.hydra.sweeper.get("_target_") == BASIC_SWEEPER:
            _failed_sweeps.append(_failure_message(failed, records, sweep_dir))


def _failure_message(failed: list[dict[str, Any]], records: list[dict[str, Any]], sweep_dir: Path) -> str:
    """Which jobs failed, named by the overrides that tell them apart, and the first one's error."""
    common = set.intersection(*(set(r["overrides"]) for r in records))
    first = failed[0]
    swept = " ".join(o for o in first["overrides"] if o not in common) or " ".join(first["overrides"])
    return (
        f"{len(failed)} of {len(records)} jobs of the sweep failed; the first, job {first['job']} ({swept}): "
        f"{first['error'].rstrip('.')}. Every job's status and error are in {sweep_dir / 'trials.csv'}, "
        "each job's log in its folder there."
    )


def exit_if_jobs_failed() -> None:
    """After a multirun: exit with status 1 and one message when any of its jobs failed."""
    if _failed_sweeps:
        print(f"Error: {' '.join(_failed_sweeps)}", file=sys.stderr)
        sys.exit(1)
