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


def build_task(checkpoint: dict[str, Any]) -> Any:
    """The task module from the checkpoint's hyperparameters and weights alone (eval and predict)."""
    target = checkpoint["litforge"]["config"]["model"]["_target_"]
    model = instantiate_task({"_target_": target, **checkpoint["hyper_parameters"]}, {})
    model.load_state_dict(checkpoint["state_dict"])
    return model


def checkpoint_data_config(
    checkpoint: dict[str, Any], extra: dict[str, Any] | None = None, overrides: DictConfig | dict | None = None
) -> DictConfig:
    """The training run's data config from the checkpoint, with `extra` and then the user's `data.*`
    overrides merged in. Null overrides are left out: the root configs list keys some data modules
    take (e.g. `test_path: null`) so that they need no `+`, and null there means "not given", so a
    run trained with its own `data.test_path` is still evaluated on it."""
    data = OmegaConf.create(checkpoint["litforge"]["config"]["data"])
    given = OmegaConf.to_container(overrides, resolve=True) if isinstance(overrides, DictConfig) else overrides or {}
    given = {key: value for key, value in given.items() if value is not None}
    return OmegaConf.merge(data, extra or {}, given)
