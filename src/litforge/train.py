"""Train a task: `python -m litforge.train [overrides]` (configs in conf/, root conf/train.yaml)."""

import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from litforge import assembly
from litforge.utils.config import CONFIG_DIR, check_override_types, config_help, require_file, value_overrides
from litforge.utils.errors import UserError, report_user_errors

log = logging.getLogger(__name__)


def validate(cfg: DictConfig) -> None:
    """Checks that must answer in a second, before torch and lightning are imported."""
    from hydra.core.hydra_config import HydraConfig

    from litforge.utils.local_config import warn_unplaced_local

    warn_unplaced_local(cfg)
    overrides = list(HydraConfig.get().overrides.task)
    groups, values = value_overrides(overrides)
    if values:
        # the command line's hydra.searchpath, which Hydra keeps apart from the task's overrides
        searchpath = [o for o in HydraConfig.get().overrides.hydra if o.lstrip("+").startswith("hydra.searchpath=")]
        baseline = hydra.compose(HydraConfig.get().job.config_name, overrides=groups + searchpath)
        check_override_types(cfg, overrides, baseline)
    from litforge.tasks.registry import check_data_fits_model

    check_data_fits_model(cfg, HydraConfig.get().runtime.choices)
    from litforge.utils.checks import check_values

    check_values(cfg)
    from litforge.tasks.training_options import check_options

    check_options(cfg)
    if cfg.get("ckpt_path"):
        from litforge.utils.checkpoint import check_checkpoint_task

        path = require_file(cfg.ckpt_path, "checkpoint file", "ckpt_path")
        check_checkpoint_task(path, cfg.model._target_, cfg.get("trusted_modules") or ())
    from litforge.tasks.hf_backbone import check_pretrained_source

    check_pretrained_source(cfg.model.get("backbone"))
    from litforge.tracking import check_trackers

    check_trackers(cfg.get("logger"))
    # the first check that imports torch
    assembly.trainer_settings(cfg.trainer)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; returns every metric, the optimised one included."""
    assembly.start(cfg, seed=cfg.get("seed"))
    datamodule = assembly.instantiate_datamodule(cfg.data)
    assembly.prepare_datamodule(datamodule, "fit")
    model = assembly.instantiate_task(cfg.model, datamodule.model_kwargs())
    loggers = assembly.instantiate_loggers(cfg.get("logger"))
    callbacks, epochs = assembly.training_callbacks(cfg, has_logger=bool(loggers))
    trainer = assembly.tracked_trainer(cfg, model, callbacks, loggers)

    metrics: dict[str, Any] = {}
    ckpt_path = cfg.get("ckpt_path")
    if cfg.get("train") and ckpt_path:
        from litforge.utils.checkpoint import load_weights_to_fine_tune

        if load_weights_to_fine_tune(model, Path(ckpt_path)):
            # a weights-only file has no optimiser, scheduler or loop state to continue
            log.info("ckpt_path=%s holds only weights: a new fit starts from them (fine-tuning)", ckpt_path)
            ckpt_path = None
    if cfg.get("train"):
        from litforge.utils.parallel import log_effective_batch_size

        log_effective_batch_size(trainer, cfg.data.get("batch_size"))
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if not epochs.validated:
            log.warning(
                "training ended before its first validation (trainer.max_steps, limit_val_batches or "
                "val_check_interval): no val/* metrics to report"
            )
        metrics.update(epochs.summary(trainer.callback_metrics))
    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning(
                "no best checkpoint (no validation, fast_dev_run or no checkpointing): testing the current weights"
            )
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        test_metrics = assembly.as_floats(trainer.callback_metrics)
        metrics.update({k: v for k, v in test_metrics.items() if k.startswith("test/")})
    metrics = assembly.as_floats(metrics)
    shown = [k for k in sorted(metrics) if k.startswith("test/")] or sorted(metrics)
    assembly.finish(trainer, cfg, metrics, "final metrics", shown, log_paths=True)
    from litforge.callbacks.last_checkpoint import remove_when_done

    remove_when_done(trainer)
    return metrics


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(config_help("train"))
        return
    from litforge import resume
    from litforge.utils.local_config import check_local_yaml

    with report_user_errors():
        check_local_yaml(sys.argv[1:])
        attempt = resume.from_argv(sys.argv)
    if attempt is None:
        run()
        from litforge.utils.sweep import exit_if_jobs_failed

        exit_if_jobs_failed()
        return
    sys.argv = attempt.argv
    with attempt.kept_if_it_counts():
        run()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def run(cfg: DictConfig) -> float | list[float] | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    with report_user_errors(cfg.paths.output_dir, exit_on_error=not in_sweep):
        validate(cfg)
        from litforge.callbacks.reliability import exit_on_sigterm
        from litforge.utils.ddp import ddp_ranks_follow_the_job

        with ddp_ranks_follow_the_job(cfg), exit_on_sigterm(cfg.paths.output_dir):
            metrics = train(cfg)
        names = cfg.get("optimized_metric")
        if not names:
            return None
        values = [optimized_value(metrics, name, in_sweep) for name in ([names] if isinstance(names, str) else names)]
        if None in values:
            return None
        return values[0] if isinstance(names, str) else values


def optimized_value(metrics: dict[str, float], name: str, required: bool = True) -> float | None:
    """The value a sweeper ranks a job by; a list of names in `optimized_metric` gives one per objective.

    Outside a sweep (`required=False`) nothing ranks it: a run without it (no validation) is no failure.
    """
    if name not in metrics:
        message = f"optimized_metric={name} was not logged; logged metrics: {sorted(metrics)}"
        if required:
            raise UserError(message)
        log.warning("%s", message)
        return None
    if not math.isfinite(metrics[name]):
        # a sweeper cannot rank a NaN: the job is reported as failed instead
        raise UserError(f"optimized metric {name} is {metrics[name]}: training diverged")
    log.info("optimized metric %s = %.6f", name, metrics[name])
    return metrics[name]


if __name__ == "__main__":
    main()
