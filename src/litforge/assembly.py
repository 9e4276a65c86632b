"""The steps that put a run together, in the order train, eval and predict take them: start (Lightning's
logs, the `extras` group, the seed), the data module and the task module (from config or from a
checkpoint), callbacks, loggers and the trainer, finish (metrics.json, the metrics table, the trackers).

torch and Lightning are imported inside the steps, so `--help` and config errors never wait for them.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from litforge.utils.errors import UserError

if TYPE_CHECKING:
    import lightning.pytorch as L

    from litforge.callbacks.best_epoch import BestEpochMetrics

log = logging.getLogger(__name__)

# the config tree of `extras.print_config` shows these first
FIRST_FIELDS = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras")


# start


def trainer_settings(cfg: DictConfig) -> dict[str, Any]:
    """The trainer config as keyword arguments, checked against the machine.

    A missing accelerator, or FSDP/DeepSpeed where they cannot run, fails here, before any data is
    read; 16-bit mixed precision on a CPU becomes bf16-mixed, the mixed precision CPUs run.
    """
    import torch

    from litforge.utils.parallel import check_sharded_strategy

    settings = OmegaConf.to_container(cfg, resolve=True)
    check_sharded_strategy(settings)
    accelerator = str(settings.get("accelerator", "auto"))
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if (accelerator in ("gpu", "cuda") and not cuda) or (accelerator == "mps" and not mps):
        raise UserError(
            f"trainer.accelerator={accelerator}: no such device on this machine "
            f"(torch {torch.__version__}, cuda available: {cuda}, mps available: {mps}). "
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
    runs_on_cpu = accelerator == "cpu" or (accelerator == "auto" and not cuda and not mps)
    if runs_on_cpu and precision in ("16-mixed", "16"):
        log.warning("precision=%s is not run on CPU; using bf16-mixed instead", precision)
        settings["precision"] = "bf16-mixed"
    return settings


def start(cfg: DictConfig, seed: int | None, verbose: bool = True) -> None:
    """Lightning's log lines through the run's handlers, the `extras` group applied, then the seed
    (None: left unseeded)."""
    import lightning.pytorch as L

    # `import lightning` gives its logger a console handler of its own; under Hydra the root
    # logger already writes to console and the run's log file, so every line came out twice
    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    apply_extras(cfg)
    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=verbose)


def apply_extras(cfg: DictConfig) -> None:
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("enforce_tags") and not cfg.get("tags"):
        log.warning("this run has no tags: add some with tags='[baseline,lr-sweep]' to find it later")
    if extras.get("print_config"):
        output_dir = Path(cfg.paths.output_dir)
        print_config_tree(cfg, save_to=output_dir / "config_tree.log" if output_dir.is_dir() else None)


def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    from rich.console import Console
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    fields = [f for f in FIRST_FIELDS if f in cfg] + [f for f in cfg if f not in FIRST_FIELDS]
    for field in fields:
        branch = tree.add(str(field), style="bold")
        value = cfg[field]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(text.rstrip())
    Console().print(tree)
    if save_to is not None:
        with open(save_to, "w") as f:
            Console(file=f, width=120).print(tree)


# the data module


def instantiate_datamodule(cfg: DictConfig, **overrides: Any) -> Any:
    """The data module, given plain lists and dicts (not ListConfig/DictConfig): its hyperparameters
    are saved into checkpoints, which `torch.load(weights_only=True)` reads."""
    try:
        return instantiate(cfg, _convert_="all", **overrides)
    except (InstantiationException, TypeError, ValueError) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        raise (cause if isinstance(cause, UserError) else UserError(f"data: {cause}")) from err


def prepare_datamodule(datamodule: Any, stage: str = "fit") -> None:
    datamodule.prepare_data()
    datamodule.setup(stage)


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


def datamodule_from_checkpoint(
    checkpoint: dict[str, Any], extra: dict[str, Any] | None = None, overrides: DictConfig | dict | None = None
) -> Any:
    """The training run's data module (see `checkpoint_data_config`) with the state it saved."""
    datamodule = instantiate_datamodule(checkpoint_data_config(checkpoint, extra, overrides))
    state_key = type(datamodule).__qualname__
    if state_key in checkpoint:
        datamodule.load_state_dict(checkpoint[state_key])
    return datamodule


# the task module


def instantiate_task(model_cfg: dict[str, Any] | DictConfig, data_kwargs: dict[str, Any]) -> Any:
    """The task module from its plain-value config plus what the data module hands over, with the
    training options of the config (compile, gradient checkpointing: tasks/training_options.py) applied."""
    from litforge.tasks.training_options import apply_options, split_options

    if isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    kwargs, options = split_options(model_cfg)
    target = kwargs.pop("_target_")
    try:
        cls = get_class(target)
    except Exception as err:
        raise UserError(f"model._target_={target}: no such class ({err})") from err
    try:
        task = cls(**kwargs, **data_kwargs)
    except (InstantiationException, TypeError, ValueError) as err:
        # a net the task builds from `model.net` fails inside Hydra's instantiate: report its own error
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        if isinstance(cause, UserError):
            raise cause from err
        raise UserError(f"model ({target}): {cause}") from err
    apply_options(task, options)
    return task


def build_task(checkpoint: dict[str, Any]) -> Any:
    """The task module from the checkpoint's hyperparameters and weights alone (eval and predict)."""
    target = checkpoint["litforge"]["config"]["model"]["_target_"]
    model = instantiate_task({"_target_": target, **checkpoint["hyper_parameters"]}, {})
    model.load_state_dict(checkpoint["state_dict"])
    return model


# callbacks


def _configs(group: DictConfig | None) -> list[DictConfig]:
    if not group:
        return []
    return [c for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def instantiate_callbacks(cfg: DictConfig | None, has_logger: bool) -> list[Any]:
    """The `callbacks` group's callbacks; the LR monitor only where a logger takes its values."""
    callbacks = []
    for c in _configs(cfg):
        if c._target_.endswith("LearningRateMonitor") and not has_logger:
            log.info("no logger: the LR monitor has nowhere to log and is left out")
            continue
        callbacks.append(instantiate(c))
    return callbacks


def training_callbacks(cfg: DictConfig, has_logger: bool) -> tuple[list[Any], BestEpochMetrics]:
    """The `callbacks` group plus those every training run keeps: the run's config and RNG state in
    each checkpoint, the stop on a non-finite loss, a checkpoint on SIGTERM, the best epoch's
    metrics (also returned, for the summary), the loader's position for a mid-epoch resume,
    checkpoint paths that follow a moved run directory and, in a pruned Optuna sweep, the pruning."""
    from litforge.callbacks.best_epoch import BestEpochMetrics
    from litforge.callbacks.checkpoint_paths import CheckpointPathsInRunDir
    from litforge.callbacks.pruning import pruning_callback
    from litforge.callbacks.reliability import CheckpointOnSigterm, RngState, StopOnNonFiniteLoss
    from litforge.callbacks.run_config import StoreRunConfig
    from litforge.data.loaders import LoaderPosition

    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=has_logger)
    checkpoint_dir = str(Path(cfg.paths.output_dir) / "checkpoints")
    epochs = BestEpochMetrics()
    callbacks += [StoreRunConfig(OmegaConf.to_container(cfg, resolve=True)), RngState(), StopOnNonFiniteLoss()]
    callbacks += [CheckpointOnSigterm(checkpoint_dir), epochs, LoaderPosition(), CheckpointPathsInRunDir()]
    pruning = pruning_callback(cfg)
    return callbacks + ([pruning] if pruning else []), epochs


# loggers and the trainer


def instantiate_loggers(cfg: DictConfig | None) -> list[Any]:
    return [instantiate(c) for c in _configs(cfg)]


def instantiate_trainer(cfg: DictConfig, callbacks: list[Any], loggers: list[Any]) -> L.Trainer:
    from lightning.pytorch import Trainer
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from litforge.utils.checkpoint_io import AtomicCheckpointIO
    from litforge.utils.parallel import build_strategy

    settings = trainer_settings(cfg)
    settings.pop("_target_", None)
    settings["strategy"] = build_strategy(settings.get("strategy", "auto"))
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


def tracked_trainer(cfg: DictConfig, model: Any, callbacks: list[Any], loggers: list[Any]) -> L.Trainer:
    """The trainer, with the run's config, git state, versions and parameter counts in every tracker."""
    from litforge import tracking

    trainer = instantiate_trainer(cfg.trainer, callbacks, loggers)
    tracking.log_run_info(trainer, cfg, model)
    return trainer


# finish


def as_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}


def write_metrics(path: Path, metrics: Mapping[str, float]) -> None:
    """Write metrics as JSON next to the run, via a temporary file so a crash leaves no half file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    tmp.replace(path)


def print_metrics_table(title: str, metrics: Mapping[str, Any], keys: Sequence[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys or sorted(metrics):
        value = metrics[key]
        value = value.item() if hasattr(value, "item") else value
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def finish(
    trainer: L.Trainer,
    cfg: DictConfig,
    metrics: dict[str, float],
    title: str,
    shown: Sequence[str] | None = None,
    log_paths: bool = False,
) -> None:
    """On rank zero, <run dir>/metrics.json and the table of the `shown` metrics (all by default);
    `log_paths` adds the best checkpoint and the run directory to the log. Then the trackers close."""
    from litforge import tracking

    if trainer.is_global_zero:
        write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
        print_metrics_table(title, metrics, shown)
        if log_paths:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback is not None else ""
            if best:
                log.info("best checkpoint: %s", best)
            log.info("run directory: %s", cfg.paths.output_dir)
    tracking.finish(trainer)
