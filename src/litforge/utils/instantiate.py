"""Build callbacks, loggers and the Trainer from their config groups."""

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


def _configs(group: DictConfig | None) -> list[DictConfig]:
    if not group:
        return []
    return [c for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list[Any]:
    return [hydra.utils.instantiate(c) for c in _configs(cfg)]


def instantiate_callbacks(cfg: DictConfig | None, has_logger: bool) -> list[Any]:
    callbacks = []
    for c in _configs(cfg):
        if c._target_.endswith("LearningRateMonitor") and not has_logger:
            log.info("no logger: the LR monitor has nowhere to log and is left out")
            continue
        callbacks.append(hydra.utils.instantiate(c))
    return callbacks


def _accelerator_available(name: str) -> bool:
    import torch

    if name in ("gpu", "cuda"):
        return torch.cuda.is_available()
    if name == "mps":
        return torch.backends.mps.is_available()
    return True


def _resolved_accelerator(name: str) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "gpu"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def trainer_settings(cfg: DictConfig) -> dict[str, Any]:
    """The trainer config as keyword arguments, checked against the machine.

    A missing accelerator fails here, before any data is read; 16-bit mixed precision on a
    CPU becomes bf16-mixed, the mixed precision CPUs run.
    """
    import torch

    settings = OmegaConf.to_container(cfg, resolve=True)
    accelerator = str(settings.get("accelerator", "auto"))
    if not _accelerator_available(accelerator):
        raise UserError(
            f"trainer.accelerator={accelerator}: no such device on this machine "
            f"(torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
            f"mps available: {torch.backends.mps.is_available()}). "
            "Use trainer=cpu or trainer=default (accelerator auto) here."
        )
    devices = settings.get("devices", "auto")
    if accelerator in ("gpu", "cuda") and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise UserError(
            f"trainer.devices={devices}: this machine has {torch.cuda.device_count()} CUDA device(s). "
            f"Give trainer.devices=<1..{torch.cuda.device_count()}> or trainer.devices=-1 for all."
        )
    if isinstance(devices, int) and devices < 1 and devices != -1:
        raise UserError(f"trainer.devices={devices}: give a positive number of devices, or -1 for all.")
    precision = str(settings.get("precision", "32-true"))
    if _resolved_accelerator(accelerator) == "cpu" and precision in ("16-mixed", "16"):
        log.warning("precision=%s is not run on CPU; using bf16-mixed instead", precision)
        settings["precision"] = "bf16-mixed"
    return settings


def instantiate_trainer(cfg: DictConfig, callbacks: list[Any], loggers: list[Any]) -> Any:
    from lightning.pytorch import Trainer
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from litforge.utils.checkpoint_io import AtomicCheckpointIO

    settings = trainer_settings(cfg)
    settings.pop("_target_", None)
    # every strategy (DDP included) writes checkpoints through this one: whole files after any kill
    plugins = [*(settings.pop("plugins", None) or []), AtomicCheckpointIO()]
    try:
        trainer = Trainer(**settings, callbacks=callbacks, logger=loggers or False, plugins=plugins)
    except (MisconfigurationException, ValueError, TypeError) as err:
        # the Trainer checks the values the config check lets through (a kind, not a value)
        raise UserError(
            f"Lightning refused the trainer config: {err} "
            "Change the trainer.* key it names (conf/trainer/ or the command line); "
            "`--cfg job` shows the composed values."
        ) from err
    log.info("precision that runs: %s on %s", trainer.precision, type(trainer.accelerator).__name__)
    return trainer
