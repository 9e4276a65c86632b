"""Start-up and memory of the entry point, each a median of several runs (whole processes)."""

import resource
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 5


def wall(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    python = sys.executable
    log_dir = tempfile.mkdtemp()
    quiet = ["extras=quiet", f"paths.log_dir={log_dir}"]
    rows = [
        ("--help", wall([python, "-m", "litforge.train", "--help"])),
        ("--cfg job", wall([python, "-m", "litforge.train", "--cfg", "job"])),
        ("bare `import lightning`", wall([python, "-c", "import lightning"])),
        ("start to first step (max_steps=1, no test)",
         wall([python, "-m", "litforge.train", *quiet, "trainer.max_steps=1", "test=false", "callbacks=none",
               "logger=none", "optimized_metric=null"])),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run([python, "-m", "litforge.train", *quiet], check=True, capture_output=True)
    train_seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{'what':<45} {'median s':>9}")
    for name, seconds in rows:
        print(f"{name:<45} {seconds:>9.2f}")
    print(f"{'default experiment (make train), one run':<45} {train_seconds:>9.2f}")
    print(f"peak RSS of the largest child process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
