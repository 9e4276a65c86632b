"""The tabular baselines bench scores scikit-learn's models on litforge's own train/test rows."""

import hydra
import numpy as np

from tests.benchmarks.bench_tabular import datamodule_rows, diabetes_table, fingerprint, split_rows
from tests.helpers import compose_config


def test_baseline_rows_are_litforges_rows(tmp_path) -> None:
    cfg = compose_config(["experiment=diabetes_mlp"], log_dir=tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    frame = diabetes_table(tmp_path)
    theirs, ours = split_rows(cfg.data, len(frame)), datamodule_rows(datamodule, frame)
    for name in ("train", "val", "test"):
        assert np.array_equal(theirs[name], ours[name]), name
    assert fingerprint(theirs["test"]) == fingerprint(ours["test"])
    assert len(theirs["test"]) == len(datamodule.splits["test"]) == 66
