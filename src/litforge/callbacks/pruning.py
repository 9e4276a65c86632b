"""Early stop of hopeless trials in an Optuna sweep with `hydra.sweeper.pruner=...`.

optuna-integration's PyTorchLightningPruningCallback needs the trial object of the process that
asked for it, and under DDP a database storage; a job here runs wherever the launcher puts it
(a joblib worker, a SLURM node), so it finds its trial through the study storage instead.
"""

import logging
from typing import Any

import lightning.pytorch as L
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class OptunaPruning(L.Callback):
    """After every validation, reports the monitored value to the job's trial (rank 0) and stops
    training cleanly when the study's pruner says so: checkpoints, test metrics and metrics.json
    are written as for any run, the trackers' runs are tagged `pruned`, and the sweeper records
    the trial as PRUNED."""

    def __init__(self, link: dict[str, Any], metric: str, pruner: Any) -> None:
        self.link, self.metric, self.pruner = link, metric, pruner
        self.trial: Any = None
        self.reports = 0

    def _trial(self) -> Any:
        if self.trial is None:
            import optuna

            from hydra_plugins.litforge_optuna_sweeper.study import make_storage
            from litforge.utils.compat import optuna_trial_id

            storage = make_storage(self.link["storage"], None, None, 0)
            study = optuna.load_study(study_name=self.link["study"], storage=storage, pruner=self.pruner)
            frozen = study.get_trials(deepcopy=False)[self.link["trial"]]
            self.trial = optuna.trial.Trial(study, optuna_trial_id(frozen))
        return self.trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero and self.metric in trainer.callback_metrics:
            trial = self._trial()
            trial.report(float(trainer.callback_metrics[self.metric]), step=self.reports)
            prune = trial.should_prune()
        self.reports += 1
        if not trainer.strategy.broadcast(prune, src=0):
            return
        trainer.should_stop = True
        if trainer.is_global_zero:
            from hydra_plugins.litforge_optuna_sweeper.study import PRUNED_ATTR

            self._trial().set_user_attr(PRUNED_ATTR, trainer.current_epoch)
            log.info(
                "trial %d pruned after epoch %d (%s = %.6f): training stops here",
                self.link["trial"],
                trainer.current_epoch,
                self.metric,
                float(trainer.callback_metrics[self.metric]),
            )
            tag_trackers(trainer)


def tag_trackers(trainer: L.Trainer) -> None:
    """`pruned` on the run in MLflow (tag optuna.pruned=true) and W&B (a run tag)."""
    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    for logger in trainer.loggers:
        try:
            if isinstance(logger, MLFlowLogger):
                logger.experiment.set_tag(logger.run_id, "optuna.pruned", "true")
            elif isinstance(logger, WandbLogger):
                logger.experiment.tags = (*logger.experiment.tags, "pruned")
        except Exception as err:  # a tracker that does not answer must not fail the trial
            log.warning("could not tag the tracker's run as pruned: %s", err)


def pruning_callback(cfg: DictConfig) -> OptunaPruning | None:
    """The callback for a job of an Optuna sweep with a pruner, else None."""
    from hydra.core.hydra_config import HydraConfig

    from hydra_plugins.litforge_optuna_sweeper.study import linked_trial, make_pruner

    link = linked_trial()
    if link is None or not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    name = str(sweeper.get("pruner") or "none")
    if name == "none":
        return None
    metric = cfg.get("optimized_metric") or cfg.model.get("monitor")
    settings = sweeper.get("pruner_settings")
    pruner = make_pruner(name, dict(settings) if settings else None, cfg.trainer.get("max_epochs"))
    return OptunaPruning(link, str(metric), pruner)
