"""Sweep throughput: wall time of a 4-job Hydra multirun (basic sweeper, tiny digits jobs) with the
joblib launcher and litforge's devices launcher (2 jobs at a time each; the devices launcher starts
a fresh process per job, pinned to one core) against the default sequential launcher; whole
processes, medians of several sweeps each, the launchers taking turns."""

import statistics
import tempfile
import time
from pathlib import Path

from tests.helpers import QUIET, check_ok, run_cli

RUNS = 3
N_JOBS = 2
# one thread per job for every launcher, so two parallel jobs do not fight over 2 cores
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
    f"devices, n_jobs={N_JOBS}, 1 core": [
        "hydra/launcher=devices",
        f"hydra.launcher.n_jobs={N_JOBS}",
        "hydra.launcher.cpus_per_job=1",
    ],
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
    sequential = medians["sequential (basic)"]
    print(f"{'4-job digits sweep, launcher':<30} {'median s':>9} {'jobs/min':>9} {'speed-up':>9} {'range s':>12}")
    for name, seconds in medians.items():
        spread = f"{min(times[name]):.1f}-{max(times[name]):.1f}"
        print(f"{name:<30} {seconds:>9.1f} {4 * 60 / seconds:>9.1f} {sequential / seconds:>9.2f} {spread:>12}")
    print(
        f"All: OMP_NUM_THREADS=1, whole `python -m litforge.train -m` processes, jobs of 1 epoch of 5 batches "
        f"(+2 val, 2 test), model.optimizer.lr over 4 values; median of {RUNS} sweeps each, launchers alternating; "
        "speed-up = sequential / launcher."
    )


if __name__ == "__main__":
    main()
