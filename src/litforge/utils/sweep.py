"""A results table for every multirun, whatever the sweeper or launcher: `<sweep dir>/trials.csv`."""

import csv
import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepResults(Callback):
    """Each job leaves `job.json` (overrides, status, returned value, error) in its folder; at
    the end of the sweep they are gathered into one CSV, one row per job. Jobs write their own
    file, so parallel launchers need no coordination."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode.name != "MULTIRUN":
            return
        failed = job_return.status == JobStatus.FAILED
        record = {
            "job": config.hydra.job.num,
            "status": job_return.status.name,
            "value": None if failed else job_return._return_value,
            "error": repr(job_return._return_value) if failed else None,
            "overrides": list(job_return.overrides or []),
        }
        Path(config.hydra.runtime.output_dir, "job.json").write_text(json.dumps(record, default=str) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = [json.loads(p.read_text()) for p in sweep_dir.glob("*/job.json")]
        if not records:
            return
        records.sort(key=lambda r: r["job"])
        with open(sweep_dir / "trials.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["job", "status", "value", "error", "overrides"])
            writer.writeheader()
            for record in records:
                writer.writerow({**record, "overrides": " ".join(record["overrides"])})
        done = [r for r in records if r["status"] == "COMPLETED"]
        log.info("sweep: %d of %d jobs completed; results in %s", len(done), len(records), sweep_dir / "trials.csv")
