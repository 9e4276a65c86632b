"""Test a checkpoint: `python -m litforge.eval ckpt_path=<file.ckpt> [+data.key=value ...]`;
or predict new texts with it: `... predict.texts='["great film", "boring"]'` or `predict.file=<txt>`."""

import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from litforge.utils.checkpoint import load_checkpoint
from litforge.utils.config import CONFIG_DIR, config_help, require_file
from litforge.utils.errors import UserError, report_user_errors

log = logging.getLogger(__name__)


def build_task(checkpoint: dict[str, Any]) -> Any:
    """The task module from the checkpoint's hyperparameters and weights alone."""
    from litforge.utils.build import instantiate_task

    target = checkpoint["litforge"]["config"]["model"]["_target_"]
    model = instantiate_task({"_target_": target, **checkpoint["hyper_parameters"]}, {})
    model.load_state_dict(checkpoint["state_dict"])
    return model


def evaluate(cfg: DictConfig, checkpoint_path: Path, checkpoint: dict[str, Any] | None = None) -> dict[str, float]:
    import lightning.pytorch as L

    from litforge import tracking
    from litforge.utils.build import instantiate_datamodule
    from litforge.utils.extras import apply_extras
    from litforge.utils.instantiate import instantiate_callbacks, instantiate_loggers, instantiate_trainer
    from litforge.utils.logs import route_lightning_logs_to_root
    from litforge.utils.metrics import as_floats, write_metrics
    from litforge.utils.rich_utils import print_metrics_table

    route_lightning_logs_to_root()
    apply_extras(cfg)
    checkpoint = checkpoint or load_checkpoint(checkpoint_path)
    run_cfg = OmegaConf.create(checkpoint["litforge"]["config"])
    L.seed_everything(run_cfg.get("seed") or 0, workers=True)
    data_cfg = OmegaConf.merge(run_cfg.data, cfg.get("data") or {})
    datamodule = instantiate_datamodule(data_cfg)
    state_key = type(datamodule).__qualname__
    if state_key in checkpoint:
        datamodule.load_state_dict(checkpoint[state_key])
    datamodule.prepare_data()
    datamodule.setup("test")
    model = build_task(checkpoint)
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    trainer = instantiate_trainer(cfg.trainer, callbacks, loggers)
    tracking.log_run_info(trainer, cfg, model)
    trainer.test(model, datamodule=datamodule)
    metrics = as_floats({k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if trainer.is_global_zero:
        write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
        print_metrics_table(f"test metrics of {checkpoint_path.name}", metrics)
    tracking.finish(trainer)
    return metrics


def read_texts(predict: DictConfig) -> list[str]:
    """predict.texts (a list, or one string) or the non-blank lines of predict.file."""
    if predict.get("texts") is not None and predict.get("file"):
        raise UserError("give predict.texts or predict.file, not both")
    if predict.get("file"):
        path = require_file(predict.file, "text file (one text a line)", "predict.file")
        texts, where = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()], str(path)
    else:
        texts, where = predict.texts, "predict.texts"
        texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise UserError(f"{where} holds no text: give at least one, e.g. predict.texts='[\"a text\"]'")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()]
    if bad:
        raise UserError(f"{where}: item {bad[0]} ({texts[bad[0]]!r}) is not a text; give non-empty strings")
    return texts


def predict(cfg: DictConfig, checkpoint_path: Path, checkpoint: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The task's `predict_texts` on new texts, printed as JSON lines and written to
    <run dir>/predictions.jsonl; keys of `predict` other than texts/file are its options."""
    import torch

    from litforge.utils.extras import apply_extras

    apply_extras(cfg)
    texts = read_texts(cfg.predict)
    model = build_task(checkpoint or load_checkpoint(checkpoint_path))
    if not hasattr(model, "predict_texts"):
        raise UserError(
            f"{type(model).__name__} does not predict from texts: leave predict.texts and predict.file "
            "unset to test the checkpoint instead."
        )
    options = {k: v for k, v in cfg.predict.items() if k not in ("texts", "file") and v is not None}
    accepted = sorted(set(inspect.signature(model.predict_texts).parameters) - {"texts"})
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"predict.{unknown[0]}: not an option of {type(model).__name__}; its options are {accepted}")
    if torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda"):
        model.cuda()
    records = model.predict_texts(texts, **options)
    path = Path(cfg.paths.output_dir) / "predictions.jsonl"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)
    for record in records:
        print(json.dumps(record, ensure_ascii=False))
    log.info("%d predictions written to %s", len(records), path)
    return records


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(config_help("eval"))
        return
    run()
    from litforge.utils.sweep import exit_if_jobs_failed

    exit_if_jobs_failed()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def run(cfg: DictConfig) -> None:
    with report_user_errors(cfg.paths.output_dir):
        path = require_file(cfg.get("ckpt_path"), "checkpoint file", "ckpt_path")
        # read (and its targets checked) before Lightning is imported: a bad file is answered at once
        checkpoint = load_checkpoint(path)
        from litforge.utils.instantiate import trainer_settings

        trainer_settings(cfg.trainer)
        from litforge.tracking import check_trackers

        check_trackers(cfg.get("logger"))
        requested = cfg.get("predict") or {}
        if requested.get("texts") is not None or requested.get("file"):
            predict(cfg, path, checkpoint)
        else:
            evaluate(cfg, path, checkpoint)


if __name__ == "__main__":
    main()
