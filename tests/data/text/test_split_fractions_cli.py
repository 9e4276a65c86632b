"""Split fractions that leave nothing to train on are refused on the user's own files for every
text task: exit 2, a message naming both values and what is valid, and no run directory."""

from pathlib import Path

import pytest

from tests.helpers import QUIET, run_cli, run_dirs
from tests.user_files import conll_file, corpus_txt, reviews_csv

TASKS = {
    "ner": ("ner_offline", "data=conll_file", conll_file, "train.conll"),
    "text classification": ("text_clf_offline", "data=text_file", reviews_csv, "reviews.csv"),
    "masked lm": ("mlm_offline", "data=mlm_text_file", corpus_txt, "corpus.txt"),
}


@pytest.mark.parametrize("task", TASKS)
def test_split_fractions_that_leave_no_training_data_are_refused(tmp_path: Path, task: str) -> None:
    experiment, data, write, name = TASKS[task]
    given = [f"experiment={experiment}", data, f"data.train_file={write(tmp_path / name)}"]
    fractions = ["data.val_fraction=0.6", "data.test_fraction=0.5"]
    proc = run_cli("litforge.train", [*QUIET, *given, *fractions], tmp_path / "logs")
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = "data.val_fraction=0.6, data.test_fraction=0.5: give each in [0, 1) and together below 1"
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path / "logs")
