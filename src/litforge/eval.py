"""Test a checkpoint: `python -m litforge.eval ckpt_path=<file.ckpt> [+data.key=value ...]`;
or predict with it, through litforge.predict's path: `... predict.texts='["great film", "boring"]'` or
`predict.file=<file>` (the inputs `python -m litforge.predict ... input=<file>` takes)."""

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from litforge import assembly
from litforge.utils.checkpoint import load_checkpoint
from litforge.utils.config import CONFIG_DIR, config_help, require_file
from litforge.utils.errors import UserError, report_user_errors

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, checkpoint_path: Path, checkpoint: dict[str, Any] | None = None) -> dict[str, float]:
    """Test the checkpoint's task on its data module (with `data.*` overrides); returns the test/* metrics."""
    checkpoint = checkpoint or load_checkpoint(checkpoint_path, cfg.get("trusted_modules") or ())
    assembly.start(cfg, seed=checkpoint["litforge"]["config"].get("seed") or 0)
    datamodule = assembly.datamodule_from_checkpoint(checkpoint, overrides=cfg.get("data"))
    assembly.prepare_datamodule(datamodule, "test")
    model = assembly.build_task(checkpoint)
    loggers = assembly.instantiate_loggers(cfg.get("logger"))
    callbacks = assembly.instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    trainer = assembly.tracked_trainer(cfg, model, callbacks, loggers)
    trainer.test(model, datamodule=datamodule)
    metrics = assembly.as_floats({k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    assembly.finish(trainer, cfg, metrics, f"test metrics of {checkpoint_path.name}")
    return metrics


def read_texts(predict: DictConfig) -> list[str]:
    """predict.texts: a list of texts, or one string."""
    texts = predict.texts
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise UserError("predict.texts holds no text: give at least one, e.g. predict.texts='[\"a text\"]'")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip() or "\n" in text or "\r" in text:
            raise UserError(
                f"predict.texts: item {i} ({text!r}) is not a text of one line; give non-empty strings without "
                "line breaks, or longer texts in a file: python -m litforge.predict ckpt_path=... input=<file>"
            )
    return texts


def check_predict_request(predict: DictConfig) -> None:
    """The predict.* keys, checked before the checkpoint is read."""
    if predict.get("texts") is not None and predict.get("file"):
        raise UserError("give predict.texts or predict.file, not both")
    unknown = sorted(set(predict) - {"texts", "file", "top_k"})
    if unknown:
        raise UserError(
            f"predict.{unknown[0]}: not an option of litforge.eval's prediction (texts, file, top_k); "
            "python -m litforge.predict takes batch_size and data.* too"
        )
    if predict.get("texts") is not None:
        read_texts(predict)
    else:
        require_file(predict.file, "file of inputs", "predict.file")


def predict(cfg: DictConfig, checkpoint_path: Path, checkpoint: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """predict.file, or predict.texts written one a line to <run dir>/inputs.txt, through the one
    prediction path (`litforge.predict.predict`, as `python -m litforge.predict ... input=<file>`);
    the records are written to <run dir>/predictions.jsonl (text tasks) and the first ones printed."""
    from omegaconf import open_dict

    from litforge import predict as prediction

    check_predict_request(cfg.predict)
    if cfg.predict.get("texts") is not None:
        source = Path(cfg.paths.output_dir) / "inputs.txt"
        source.write_text("".join(text + "\n" for text in read_texts(cfg.predict)), encoding="utf-8")
    else:
        source = require_file(cfg.predict.file, "file of inputs", "predict.file")
    request = cfg.copy()
    with open_dict(request):
        request.input, request.top_k, request.batch_size = str(source), cfg.predict.get("top_k"), None
    checkpoint = checkpoint or load_checkpoint(checkpoint_path, cfg.get("trusted_modules") or ())
    return prediction.predict(request, checkpoint_path, checkpoint)


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(config_help("eval"))
        return
    from litforge.utils.local_config import check_local_yaml

    with report_user_errors():
        check_local_yaml(sys.argv[1:])
    run()
    from litforge.utils.sweep import exit_if_jobs_failed

    exit_if_jobs_failed()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def run(cfg: DictConfig) -> None:
    with report_user_errors(cfg.paths.output_dir):
        from litforge.utils.local_config import warn_unplaced_local

        warn_unplaced_local(cfg)
        from litforge.utils.parallel import refuse_deepspeed_folder

        refuse_deepspeed_folder(cfg.get("ckpt_path"))
        path = require_file(cfg.get("ckpt_path"), "checkpoint file", "ckpt_path")
        from litforge.utils.checks import check_values

        check_values(cfg)
        requested = cfg.get("predict") or {}
        predicting = requested.get("texts") is not None or bool(requested.get("file"))
        if predicting:
            check_predict_request(cfg.predict)
        # read (and its targets checked) before Lightning is imported: a bad file is answered at once
        checkpoint = load_checkpoint(path, cfg.get("trusted_modules") or ())
        assembly.trainer_settings(cfg.trainer)
        from litforge.tracking import check_trackers

        check_trackers(cfg.get("logger"))
        if predicting:
            predict(cfg, path, checkpoint)
        else:
            evaluate(cfg, path, checkpoint)


if __name__ == "__main__":
    main()
