"""Progress as log lines when no terminal watches the run (nohup, CI, SLURM): the run's stdout and
train.log show every epoch's validation metrics and, every N steps, the training loss."""

import csv
import re
from pathlib import Path

import pytest

from tests.helpers import check_ok, run_cli, run_dirs

EPOCH_LINE = re.compile(
    r"epoch (\d+) done \((\d+)/2\): val/acc ([\d.]+) \(best ([\d.]+)\), .*\| train/loss ([\d.]+) \| "
    r"\d+ samples in [\d.]+ s, [\d.]+ samples/s \| ETA \d+:\d\d:\d\d"
)
STEP_LINE = re.compile(r"epoch (\d+) step (\d+)/(\d+) \(batch \d+/\d+\): train/loss [\d.]+ \| .* samples/s \| ETA ")


def test_a_run_without_a_terminal_logs_epochs_and_steps(tmp_path: Path) -> None:
    overrides = ["data=digits", "trainer.max_epochs=2", "callbacks.progress_log.every_n_steps=5", "extras=quiet"]
    proc = run_cli("litforge.train", overrides, tmp_path, env={"OMP_NUM_THREADS": "1"})
    check_ok(proc)
    (run,) = run_dirs(tmp_path)
    logged = (run / "train.log").read_text()
    per_epoch = {}
    for name, text in [("stdout", proc.stdout), ("train.log", logged)]:
        epochs = EPOCH_LINE.findall(text)
        assert [int(e[0]) for e in epochs] == [0, 1], f"{name}:\n{text[-3000:]}"
        steps = [m.groups() for m in STEP_LINE.finditer(text)]
        total = int(steps[-1][2])
        assert [int(s[1]) for s in steps] == list(range(5, total + 1, 5)), name
        per_epoch[name] = epochs
    assert per_epoch["stdout"] == per_epoch["train.log"]

    # the numbers are the run's own: val/acc as the CSV logger recorded it, the best the checkpoint kept
    rows = list(csv.DictReader((run / "csv/metrics.csv").open()))
    accs = [float(r["val/acc"]) for r in rows if r["val/acc"]]
    losses = [float(r["train/loss_epoch"]) for r in rows if r["train/loss_epoch"]]
    for (_, _, acc, _, loss), csv_acc, csv_loss in zip(per_epoch["stdout"], accs, losses, strict=True):
        assert float(acc) == pytest.approx(csv_acc, rel=1e-3) and float(loss) == pytest.approx(csv_loss, rel=1e-3)
    assert [float(e[3]) for e in per_epoch["stdout"]] == pytest.approx([accs[0], max(accs)], rel=1e-3)
    # without a terminal the progress bar is off: it would print only its last frame at the end
    assert "Epoch 1/1" not in proc.stdout + proc.stderr
