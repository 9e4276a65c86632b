"""The real-size encoder benchmark (make bench) on its tiny config, so that its code cannot rot: both
sides train the same model on the same split and the table has every task and side."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_benchmark_compares_the_same_model_on_both_sides() -> None:
    command = [sys.executable, "-m", "tests.benchmarks.bench_encoders", "--quick", "--examples", "60"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("ner ", "text "))]
    assert [(row[0], row[1]) for row in rows] == [
        ("ner", "litforge"),
        ("ner", "transformers.Trainer"),
        ("text", "litforge"),
        ("text", "transformers.Trainer"),
    ], proc.stdout
    for litforge, trainer in (rows[0:2], rows[2:4]):
        # the same parameter count: one model, trained by each
        assert litforge[2] == trainer[2]
        assert float(litforge[3]) > 0 and float(trainer[3]) > 0
        assert float(trainer[4]) == 1.0 and float(trainer[6]) == 1.0
