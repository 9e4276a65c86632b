"""Users' own tables and texts through the command line: train, test, metrics.json, then eval
from the checkpoint alone (images: tests/test_user_images.py; CoNLL and review CSVs with a
pretrained backbone: tests/tasks/test_hf_backbone_cli.py)."""

import json
from pathlib import Path

from tests.helpers import QUIET, TINY_BACKBONE, check_ok, run_cli, run_dirs
from tests.user_files import corpus_txt, houses_csv

SHORT = [*QUIET, "trainer.max_epochs=2"]
TINY_BERT = [
    "data.vocab_size=150",
    "data.max_length=24",
    "data.batch_size=16",
    *TINY_BACKBONE,
]


def trained_run(log_dir: Path, overrides: list[str]) -> tuple[Path, dict[str, float]]:
    check_ok(run_cli("litforge.train", [*SHORT, *overrides], log_dir))
    (run,) = run_dirs(log_dir)
    return run, json.loads((run / "metrics.json").read_text())


def evaluated(run: Path, log_dir: Path) -> dict[str, float]:
    (best,) = (run / "checkpoints").glob("best_*.ckpt")
    check_ok(run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}"], log_dir))
    (eval_run,) = run_dirs(log_dir, "eval")
    return json.loads((eval_run / "metrics.json").read_text())


def test_a_csv_with_a_text_column_and_gaps_trains_and_evaluates(tmp_path: Path) -> None:
    table = houses_csv(tmp_path / "houses.csv", gaps=True)
    given = ["data=tabular_file", "model=regressor", f"data.path={table}", "data.target=price"]
    refused = run_cli("litforge.train", [*SHORT, *given], tmp_path / "refused")
    assert refused.returncode == 2 and "column 'area'" in refused.stderr and "data.impute" in refused.stderr
    assert not run_dirs(tmp_path / "refused")

    run, metrics = trained_run(tmp_path / "logs", [*given, "data.impute=median"])
    assert {"test/r2", "test/rmse", "val/r2"} <= set(metrics)
    assert "left out non-numeric columns ['town']" in (run / "train.log").read_text()
    scored = evaluated(run, tmp_path / "logs")
    assert abs(scored["test/rmse"] - metrics["test/rmse"]) < 1e-4


def test_a_plain_text_corpus_pretrains_and_evaluates(tmp_path: Path) -> None:
    corpus = corpus_txt(tmp_path / "corpus.txt")
    overrides = ["data=mlm_text_file", "model=masked_lm", f"data.train_file={corpus}", *TINY_BERT]
    run, metrics = trained_run(tmp_path / "logs", overrides)
    assert {"test/loss", "test/perplexity", "val/loss"} <= set(metrics)
    scored = evaluated(run, tmp_path / "logs")
    assert abs(scored["test/loss"] - metrics["test/loss"]) < 1e-3
