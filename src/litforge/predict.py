"""Predict new inputs with a checkpoint: `python -m litforge.predict ckpt_path=<file.ckpt> input=<file, folder or glob>`
(root config conf/predict.yaml: `top_k`, `batch_size`, `data.<key>` overrides; console script `litforge-predict`).

One path for every task, the checkpoint alone: the task is rebuilt from it, and the data module from
its data config with `predict_path=<input>` (+ `batch_size`, + `data.*`) and its saved state
(`checkpoint[<data module class>]`), so preprocessing is the training run's. `trainer.predict`
batches on the run's device; the contract each side keeps:

- a data module takes `predict_path` (a file, a folder or a glob), and `setup("predict")` (Lightning
  calls it, and `prepare_data`) reads those inputs only, never the training data; its
  `predict_dataloader()` batches carry `"id"` (a list of str: an image's path, a table's row number
  or `data.id_column`) beside the model inputs;
- a task has a `prediction_file` class attribute ("predictions.csv" for flat records: images, tables;
  "predictions.jsonl" for nested ones: texts, spans), honours `predict_top_k` (None: every class),
  and its `predict_step(batch, batch_idx)` returns a list of plain dict records, one per input,
  each starting with its "id" (classification: "prediction", "probability", "prob/<class>";
  regression: "prediction", or "prediction/<target>" for several targets, in the target's units).

The records are written to `<run dir>/<prediction_file>` (logs/predict/runs/<stamp>/) in one go
and summarised on the console.
"""

import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from litforge import assembly
from litforge.utils.checkpoint import load_checkpoint
from litforge.utils.config import CONFIG_DIR, config_help, require_file
from litforge.utils.errors import UserError, report_user_errors

log = logging.getLogger(__name__)

# what the console summary shows of the output
SHOWN_ROWS, SHOWN_COLUMNS = 5, 8


def _options(cfg: DictConfig) -> tuple[int | None, int | None]:
    """top_k and batch_size, each a positive integer or null."""
    values = []
    for key in ("top_k", "batch_size"):
        value = cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"{key}={value!r}: give a positive whole number, or null for the default")
        values.append(value)
    return values[0], values[1]


def build_datamodule(checkpoint: dict[str, Any], cfg: DictConfig) -> Any:
    """The training run's data module set to read `cfg.input`, with its saved state."""
    _, batch_size = _options(cfg)
    extra = {"predict_path": str(cfg.input)}
    if batch_size is not None:
        extra["batch_size"] = batch_size
    return assembly.datamodule_from_checkpoint(checkpoint, extra, cfg.get("data"))


def write_predictions(records: list[dict[str, Any]], path: Path) -> None:
    """CSV (columns: every key, in first-seen order; a record without one leaves it empty) or JSON
    lines, written to a temporary file first so that an interrupted run leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        if path.suffix == ".csv":
            columns = list(dict.fromkeys(key for record in records for key in record))
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(records)
        else:
            f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    os.replace(tmp, path)


def print_summary(records: list[dict[str, Any]], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{len(records)} predictions written to {path}")
    if path.suffix == ".csv":
        columns = list(dict.fromkeys(key for record in records[:SHOWN_ROWS] for key in record))[:SHOWN_COLUMNS]
        table = Table(title=f"first {min(len(records), SHOWN_ROWS)} rows")
        for column in columns:
            table.add_column(column, overflow="fold")
        for record in records[:SHOWN_ROWS]:
            table.add_row(*(_cell(record.get(column, "")) for column in columns))
        console.print(table)
    else:
        for record in records[:SHOWN_ROWS]:
            console.print(json.dumps(record, ensure_ascii=False), markup=False, highlight=False)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def predict(cfg: DictConfig, checkpoint_path: Path, checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's records for every input, written to <run dir>/<task's prediction_file>."""
    assembly.start(cfg, seed=checkpoint["litforge"]["config"].get("seed") or 0, verbose=False)
    model = assembly.build_task(checkpoint)
    if not hasattr(model, "prediction_file"):
        raise UserError(f"ckpt_path={checkpoint_path}: {type(model).__name__} does not predict from files")
    top_k, _ = _options(cfg)
    model.predict_top_k = top_k
    datamodule = build_datamodule(checkpoint, cfg)
    trainer = assembly.instantiate_trainer(cfg.trainer, [], [])
    if trainer.world_size > 1:
        raise UserError(
            f"predict runs on one device; trainer.devices={cfg.trainer.devices} with "
            f"trainer.num_nodes={cfg.trainer.num_nodes} gives {trainer.world_size}. Use trainer.devices=1."
        )
    batches = trainer.predict(model, datamodule=datamodule) or []
    records = [record for batch in batches for record in batch]
    path = Path(cfg.paths.output_dir) / model.prediction_file
    write_predictions(records, path)
    log.info("%d predictions of %s written to %s", len(records), checkpoint_path.name, path)
    print_summary(records, path)
    return records


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(config_help("predict"))
        return
    run()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
def run(cfg: DictConfig) -> None:
    with report_user_errors(cfg.paths.output_dir):
        from litforge.utils.parallel import refuse_deepspeed_folder

        refuse_deepspeed_folder(cfg.get("ckpt_path"))
        path = require_file(cfg.get("ckpt_path"), "checkpoint file", "ckpt_path")
        if OmegaConf.is_missing(cfg, "input") or cfg.input in (None, ""):
            raise UserError(
                "input is not set: give a file, a folder or a glob, e.g. input=new_images/ or input=rows.csv"
            )
        _options(cfg)
        # read (and its targets checked) before Lightning is imported: a bad file is answered at once
        checkpoint = load_checkpoint(path, cfg.get("trusted_modules") or ())
        assembly.trainer_settings(cfg.trainer)
        predict(cfg, path, checkpoint)


if __name__ == "__main__":
    main()
