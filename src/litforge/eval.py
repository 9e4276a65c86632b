"""Test a checkpoint: `python -m litforge.eval ckpt_path=<file.ckpt> [+data.key=value ...]`."""

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from litforge.utils.config import require_file
from litforge.utils.errors import UserError, report_user_errors

log = logging.getLogger(__name__)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded with torch's weights-only (no code execution) unpickler."""
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        raise UserError(
            f"ckpt_path={path}: not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:100]}). "
            "Give a .ckpt file written by litforge.train (e.g. <run dir>/checkpoints/last.ckpt)."
        ) from err
    if not isinstance(checkpoint, dict) or "litforge" not in checkpoint:
        raise UserError(
            f"ckpt_path={path}: not a litforge checkpoint (it carries no run config). "
            "Give a .ckpt file written by litforge.train."
        )
    return checkpoint


def evaluate(cfg: DictConfig, checkpoint_path: Path) -> dict[str, float]:
    import lightning.pytorch as L

    from litforge.utils.build import instantiate_datamodule, instantiate_task
    from litforge.utils.extras import apply_extras
    from litforge.utils.instantiate import instantiate_callbacks, instantiate_loggers, instantiate_trainer
    from litforge.utils.logs import route_lightning_logs_to_root
    from litforge.utils.metrics import as_floats, write_metrics
    from litforge.utils.rich_utils import print_metrics_table

    route_lightning_logs_to_root()
    apply_extras(cfg)
    checkpoint = load_checkpoint(checkpoint_path)
    run_cfg = OmegaConf.create(checkpoint["litforge"]["config"])
    L.seed_everything(run_cfg.get("seed") or 0, workers=True)
    data_cfg = OmegaConf.merge(run_cfg.data, cfg.get("data") or {})
    datamodule = instantiate_datamodule(data_cfg)
    state_key = type(datamodule).__qualname__
    if state_key in checkpoint:
        datamodule.load_state_dict(checkpoint[state_key])
    datamodule.prepare_data()
    datamodule.setup("test")
    model = instantiate_task({"_target_": run_cfg.model._target_, **checkpoint["hyper_parameters"]}, {})
    model.load_state_dict(checkpoint["state_dict"])
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    trainer = instantiate_trainer(cfg.trainer, callbacks, loggers)
    trainer.test(model, datamodule=datamodule)
    metrics = as_floats({k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if trainer.is_global_zero:
        write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
        print_metrics_table(f"test metrics of {checkpoint_path.name}", metrics)
    return metrics


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with report_user_errors(cfg.paths.output_dir):
        path = require_file(cfg.get("ckpt_path"), "checkpoint file", "ckpt_path")
        from litforge.utils.instantiate import trainer_settings

        trainer_settings(cfg.trainer)
        evaluate(cfg, path)


if __name__ == "__main__":
    main()
