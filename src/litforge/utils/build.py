"""Instantiate the data module and the task module from config, with errors the user can act on."""

import logging
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from litforge.utils.errors import UserError

log = logging.getLogger(__name__)


def _user_error(err: Exception, key: str) -> UserError:
    cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
    if isinstance(cause, UserError):
        return cause
    return UserError(f"{key}: {cause}")


def instantiate_datamodule(cfg: DictConfig, **overrides: Any) -> Any:
    """The data module, given plain lists and dicts (not ListConfig/DictConfig): its hyperparameters
    are saved into checkpoints, which `torch.load(weights_only=True)` reads."""
    try:
        return hydra.utils.instantiate(cfg, _convert_="all", **overrides)
    except (InstantiationException, TypeError, ValueError) as err:
        raise _user_error(err, "data") from err


def prepare_datamodule(datamodule: Any) -> None:
    datamodule.prepare_data()
    datamodule.setup("fit")


def instantiate_task(model_cfg: dict[str, Any] | DictConfig, data_kwargs: dict[str, Any]) -> Any:
    """The task module from its plain-value config plus what the data module hands over."""
    if isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    kwargs = dict(model_cfg)
    target = kwargs.pop("_target_")
    try:
        cls = hydra.utils.get_class(target)
    except Exception as err:
        raise UserError(f"model._target_={target}: no such class ({err})") from err
    try:
        return cls(**kwargs, **data_kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"model ({target}): {err}") from err
