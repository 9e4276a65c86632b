"""A grid sweep (Hydra's basic sweeper) with a job that fails: every job's row in trials.csv, one
clear message, a non-zero exit."""

import csv
import json
from pathlib import Path

from tests.helpers import QUIET, run_cli

TINY = [
    *QUIET,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


def test_a_failing_job_of_a_grid_sweep_is_a_failed_row_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # one job per batch: the jobs after the failing one must still run
    overrides = ["-m", *TINY, "model.optimizer.lr=0.001,1e12,0.002", "hydra.sweeper.max_batch_size=1"]
    proc = run_cli("litforge.train", overrides, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "Error executing job" not in out
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    assert (
        "Error: 1 of 3 jobs of the sweep failed; the first, job 1 (model.optimizer.lr=1000000000000.0): "
        "the training loss is nan"
    ) in proc.stderr
    assert f"{sweep / 'trials.csv'}" in proc.stderr

    with open(sweep / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert "the training loss is nan" in rows[1]["error"] and not rows[1]["value"]
    for row in (rows[0], rows[2]):
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert float(row["value"]) == metrics["val/acc"]
    assert not (sweep / "1" / "metrics.json").exists()
