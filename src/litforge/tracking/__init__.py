"""What every run records in every tracker (MLflow, W&B, TensorBoard, CSV) besides the metrics
Lightning logs itself, and the checks that fail before training instead of after it."""

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litforge.tracking import run_ids
from litforge.tracking.run_info import flat_params, git_state, hydra_job, package_versions, parameter_counts
from litforge.tracking.settings import check_trackers
from litforge.tracking.sweep import RUN_DIR_TAG

__all__ = ["check_trackers", "finish", "log_figures", "log_run_info"]

log = logging.getLogger(__name__)


def _config_files(output_dir: Path) -> list[Path]:
    """The .hydra files of the run: the composed config, Hydra's own and the overrides."""
    job = hydra_job()
    folder = output_dir / ((job.output_subdir if job is not None else None) or ".hydra")
    return sorted(folder.glob("*.yaml"))


def log_run_info(trainer: Any, cfg: DictConfig, model: Any) -> None:
    """The resolved config as flat params plus git state, package versions and parameter counts in
    every tracker; tags and the .hydra config files in those that keep them."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    if trainer.fast_dev_run and cfg.get("logger"):
        log.warning("fast_dev_run turns Lightning's loggers off: this run is not tracked (debug=limit is)")
        return
    code = git_state()
    params = {
        **flat_params(OmegaConf.to_container(cfg, resolve=True)),
        **code,
        **package_versions(),
        **parameter_counts(model),
        "precision": str(trainer.precision),
    }
    for logger in trainer.loggers:
        logger.log_hyperparams(_new_mlflow_params(logger, params) if isinstance(logger, MLFlowLogger) else params)
    if not trainer.is_global_zero:
        return
    output_dir = Path(cfg.paths.output_dir).resolve()
    files = _config_files(output_dir)
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            from mlflow.entities import RunTag

            run_ids.remember(output_dir, mlflow=logger.run_id)
            tags = {**code, RUN_DIR_TAG: output_dir}
            logger.experiment.log_batch(logger.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
            for path in files:
                logger.experiment.log_artifact(logger.run_id, str(path), "hydra")
        elif isinstance(logger, WandbLogger):
            for path in files:
                logger.experiment.save(str(path), base_path=str(output_dir), policy="now")
        elif isinstance(logger, TensorBoardLogger):
            for path in files:
                # TensorBoard's text tab renders markdown: indented lines keep the YAML as it is
                text = "\n".join(f"    {line}" for line in path.read_text().splitlines())
                logger.experiment.add_text(f"config/{path.name}", text)


def _new_mlflow_params(logger: Any, params: dict[str, Any]) -> dict[str, Any]:
    """MLflow params cannot change: a resumed run logs only new ones, and the values it changed
    (e.g. trainer.max_epochs, ckpt_path) as the tag `litforge.resumed_with`."""
    logged = logger.experiment.get_run(logger.run_id).data.params
    if not logged:
        return params
    changed = {k: v for k, v in params.items() if k in logged and logged[k] != str(v)}
    if changed:
        text = " ".join(f"{k}={v}" for k, v in sorted(changed.items()))
        logger.experiment.set_tag(logger.run_id, "litforge.resumed_with", text[:5000])
    return {k: v for k, v in params.items() if k not in logged}


def log_figures(trainer: Any, figures: Mapping[str, Path]) -> None:
    """The task's saved figures (PNG files) as images or artifacts of each tracker."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
    from matplotlib.image import imread

    for logger in trainer.loggers:
        for name, path in figures.items():
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_artifact(logger.run_id, str(path), "plots")
            elif isinstance(logger, WandbLogger):
                logger.log_image(key=f"plots/{name}", images=[str(path)])
            elif isinstance(logger, TensorBoardLogger):
                rgb = imread(path)[..., :3]
                logger.experiment.add_image(f"plots/{name}", rgb, trainer.global_step, dataformats="HWC")


def finish(trainer: Any) -> None:
    """At the end of a run: the best monitored value, the best checkpoint where asked (and its
    model-registry version, MLflow), and W&B runs closed so a sweep's next job starts its own."""
    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    if not trainer.is_global_zero:
        return
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    summary = {}
    if best and checkpoint.monitor and checkpoint.best_model_score is not None:
        summary[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
    for logger in trainer.loggers:
        upload = bool(best) and getattr(logger, "log_best_checkpoint", False)
        if isinstance(logger, MLFlowLogger):
            from litforge.tracking.mlflow_run import log_checkpoint

            if summary:
                logger.log_metrics(summary)
            if upload:
                log_checkpoint(logger, best)
        elif isinstance(logger, WandbLogger):
            run = logger.experiment
            run.summary.update(summary)
            if upload:
                _wandb_checkpoint(run, best, summary)
            run.finish()
    _report_outages(trainer)


def _report_outages(trainer: Any) -> None:
    """Last of all, so that a tracker whose server came back gets everything the run logged."""
    from lightning.pytorch.loggers import CSVLogger

    from litforge.tracking.mlflow_run import MLflowRunLogger

    kept = [f"metrics in {logger.log_dir}/metrics.csv" for logger in trainer.loggers if isinstance(logger, CSVLogger)]
    if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.dirpath:
        kept.append(f"checkpoints in {trainer.checkpoint_callback.dirpath}")
    for logger in trainer.loggers:
        if isinstance(logger, MLflowRunLogger):
            logger.report_outage(", ".join(kept) or "metrics.json in the run directory")


def _wandb_checkpoint(run: Any, path: str, summary: Mapping[str, float]) -> None:
    import wandb

    artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=dict(summary))
    artifact.add_file(path)
    run.log_artifact(artifact, aliases=["best"])
