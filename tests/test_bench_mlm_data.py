"""The masked-LM data benchmark (make bench) on two small corpora, so that its code cannot rot: both
sizes prepared, both tokenisers counted on the same split."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_benchmark_prepares_both_sizes_and_counts_tokens_of_both_sides() -> None:
    command = [sys.executable, "-m", "tests.benchmarks.bench_mlm_data", "--quick"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["0.2"], ["0.5"])]
    assert [row[0] for row in rows] == ["0.2", "0.5"], proc.stdout
    small, large = rows
    assert int(large[1]) > int(small[1]) > 0  # texts: the larger corpus has more
    for row in rows:
        peak, imported, anon, ours, hf = (float(v) for v in (row[3], row[4], row[5], row[6], row[7]))
        assert peak >= imported > 0 and anon > 0 and ours > 0 and hf > 0
    assert "peak RSS 0.5 MB / 0.2 MB corpus" in proc.stdout
