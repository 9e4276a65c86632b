"""Sweep throughput: wall time of a 4-job Hydra multirun (basic sweeper, tiny digits jobs) with the
joblib launcher (2 jobs at a time) against the default sequential launcher; whole processes,
medians of several sweeps each, the two launchers taking turns."""

import statistics
import tempfile
import time
from pathlib import Path

from tests.helpers import QUIET, check_ok, run_cli

RUNS = 3
N_JOBS = 2
# one thread per job for both launchers, so two parallel jobs do not fight over 2 cores
ENV = {"OMP_NUM_THREADS": "1"}
SWEEP = [
    "-m",
    *QUIET,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "model.optimizer.lr=0.001,0.002,0.003,0.004",
]
LAUNCHERS = {
    "sequential (basic)": [],
    f"joblib, n_jobs={N_JOBS}": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={N_JOBS}"],
}


def sweep_seconds(launcher: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        start = time.perf_counter()
        proc = run_cli("litforge.train", [*SWEEP, *launcher], log_dir, env=ENV)
        seconds = time.perf_counter() - start
        check_ok(proc)
        jobs = [p for p in (log_dir / "train" / "multiruns").glob("*/*") if p.is_dir()]
    assert len(jobs) == 4, f"expected 4 job folders, found {len(jobs)}"
    return seconds


def main() -> None:
    times: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    for _ in range(RUNS):
        for name, launcher in LAUNCHERS.items():
            times[name].append(sweep_seconds(launcher))
    medians = {name: statistics.median(values) for name, values in times.items()}
    sequential, parallel = medians.values()
    print(f"{'4-job digits sweep, launcher':<30} {'median s':>9} {'jobs/min':>9}")
    for name, seconds in medians.items():
        print(f"{name:<30} {seconds:>9.1f} {4 * 60 / seconds:>9.1f}")
    print(f"{'speed-up (sequential / joblib)':<30} {sequential / parallel:>9.2f}")
    print(
        f"Both: OMP_NUM_THREADS=1, whole `python -m litforge.train -m` processes, jobs of 1 epoch of 5 batches "
        f"(+2 val, 2 test), model.optimizer.lr over 4 values; median of {RUNS} sweeps each, launchers alternating."
    )


if __name__ == "__main__":
    main()
