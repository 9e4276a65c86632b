"""Training over several devices: Lightning's sharded strategies (FSDP, DeepSpeed ZeRO) built from
configs, the checks that refuse them where they cannot run, DeepSpeed's checkpoint folders, and the
effective batch size.

torch is imported inside the functions: the config check calls them before a run starts.
"""

import importlib
import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from litforge.utils.errors import UserError

if TYPE_CHECKING:
    import lightning.pytorch as L
    from lightning.pytorch.strategies import Strategy

log = logging.getLogger(__name__)

# the strategy classes by kind, as a `trainer.strategy._target_` names them
SHARDED_CLASSES = {"FSDPStrategy": "fsdp", "DeepSpeedStrategy": "deepspeed"}
# FSDPStrategy keys that take a set of layer classes, which a config gives as a list of class paths
FSDP_POLICY_KEYS = ("auto_wrap_policy", "activation_checkpointing_policy")
FSDP_SHARDING = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")
ZERO_STAGES = (0, 1, 2, 3)
ON_CPU = "Use trainer=ddp_sim to check DDP code on CPU (2 processes over gloo), or trainer=cpu for one process"


def sharded_kind(strategy: Any) -> str | None:
    """The kind of a strategy config, fsdp or deepspeed (one of Lightning's names for them, e.g.
    deepspeed_stage_3, or a mapping whose `_target_` is one of their classes); None for any other."""
    if isinstance(strategy, str):
        return next((kind for kind in ("fsdp", "deepspeed") if strategy.lower().startswith(kind)), None)
    if isinstance(strategy, Mapping):
        return SHARDED_CLASSES.get(str(strategy.get("_target_", "")).rpartition(".")[2])
    return None


def _shown(strategy: Any, kind: str) -> str:
    """How the command line chose the strategy: trainer=<preset> where the preset is named after it."""
    from hydra.core.hydra_config import HydraConfig

    preset = HydraConfig.get().runtime.choices.get("trainer") if HydraConfig.initialized() else None
    if isinstance(strategy, str):
        return f"trainer.strategy={strategy}"
    return f"trainer={preset}" if preset == kind else f"trainer.strategy._target_={strategy['_target_']}"


def check_sharded_strategy(settings: Mapping[str, Any]) -> None:
    """Refuse FSDP or DeepSpeed where they cannot run (no CUDA GPU, a CPU accelerator, deepspeed not
    installed) and values they would refuse only once the data is read; other strategies pass."""
    strategy = settings.get("strategy")
    kind = sharded_kind(strategy)
    if kind is None:
        return
    shown = _shown(strategy, kind)
    if isinstance(strategy, Mapping):
        _check_strategy_values(strategy, kind)
    import torch

    machine = f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
    if kind == "deepspeed":
        _check_deepspeed_machine(strategy, shown, machine)
    elif not torch.cuda.is_available():
        raise UserError(f"{shown} needs CUDA GPUs: this machine has none ({machine}). {ON_CPU}.")
    accelerator = str(settings.get("accelerator", "auto"))
    if accelerator not in ("auto", "gpu", "cuda"):
        raise UserError(
            f"trainer.accelerator={accelerator}: {shown} runs on CUDA GPUs only. Give trainer.accelerator=gpu."
        )


def _check_deepspeed_machine(strategy: Any, shown: str, machine: str) -> None:
    import torch

    stage = strategy.get("stage", 2) if isinstance(strategy, Mapping) else None
    named = f"{shown} (ZeRO stage {stage})" if stage is not None else shown
    cuda, installed = torch.cuda.is_available(), importlib.util.find_spec("deepspeed") is not None
    missing = [] if cuda else [f"CUDA GPUs (this machine has none: {machine})"]
    if not installed:
        missing.append("the deepspeed package (not installed here; litforge does not depend on it)")
    if not missing:
        return
    if cuda:
        advice = "Install it (pip install deepspeed), or use trainer=fsdp, which needs only torch."
    else:
        advice = f"{ON_CPU}; on a machine with NVIDIA GPUs{'' if installed else ', pip install deepspeed'}."
    raise UserError(f"{named} needs {' and '.join(missing)}. {advice}")


def _check_strategy_values(strategy: Mapping[str, Any], kind: str) -> None:
    if kind == "deepspeed":
        stage = strategy.get("stage", 2)
        if stage not in ZERO_STAGES or isinstance(stage, bool):
            raise UserError(
                f"trainer.strategy.stage={stage}: give a ZeRO stage 1 (optimizer state sharded), 2 (+ gradients) "
                "or 3 (+ parameters), or 0 for none."
            )
        return
    if strategy.get("state_dict_type", "full") != "full":
        raise UserError(
            f"trainer.strategy.state_dict_type={strategy['state_dict_type']}: litforge's checkpoints are single "
            "files, which eval, predict and resume read (a sharded checkpoint is a folder of per-rank files). "
            "Give trainer.strategy.state_dict_type=full."
        )
    sharding = strategy.get("sharding_strategy", "FULL_SHARD")
    if str(sharding).upper() not in FSDP_SHARDING:
        raise UserError(f"trainer.strategy.sharding_strategy={sharding}: give one of {', '.join(FSDP_SHARDING[:-1])}.")
    for key in FSDP_POLICY_KEYS:
        _layer_classes(strategy.get(key), key)


def _layer_classes(names: Any, key: str) -> set[type] | None:
    """A policy given as a list of class paths, as the set of classes FSDPStrategy takes."""
    if names is None:
        return None
    names = [names] if isinstance(names, str) else names
    example = "e.g. [transformers.models.bert.modeling_bert.BertLayer]"
    if not isinstance(names, list | tuple) or not names:
        raise UserError(f"trainer.strategy.{key}={names}: give a list of layer classes, {example}, or null")
    classes = set()
    for name in names:
        module, _, attribute = str(name).rpartition(".")
        try:
            found = getattr(importlib.import_module(module), attribute) if module else None
        except (ImportError, AttributeError, ValueError) as err:
            found, reason = None, f"{type(err).__name__}: {err}"
        else:
            reason = "not a class"
        if not isinstance(found, type):
            raise UserError(
                f"trainer.strategy.{key}: {name} is no layer class that can be imported ({reason}). "
                f"Give the module path of each layer class, {example}."
            )
        classes.add(found)
    return classes


def build_strategy(strategy: Any) -> "str | Strategy":
    """The Trainer's `strategy`: a name as it is, a mapping with a `_target_` built into its object
    (with FSDP's policies given as class paths turned into the classes)."""
    if not isinstance(strategy, Mapping):
        return strategy
    from lightning.pytorch.strategies import Strategy

    kwargs = dict(strategy)
    if sharded_kind(kwargs) == "fsdp":
        for key in FSDP_POLICY_KEYS:
            kwargs[key] = _layer_classes(kwargs.get(key), key)
    try:
        built = instantiate(kwargs, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise UserError(f"trainer.strategy ({kwargs.get('_target_')}): {cause}") from err
    if not isinstance(built, Strategy):
        raise UserError(f"trainer.strategy._target_={kwargs.get('_target_')} is no Lightning Strategy")
    return built


def refuse_deepspeed_folder(path: Any) -> None:
    """A DeepSpeed checkpoint (a folder of ZeRO shards) where litforge reads one file: the message says
    how to consolidate it. litforge does not do it itself: DeepSpeed's files load only through the full
    unpickler, which runs what code a file names, and litforge reads checkpoints weights-only."""
    if path in (None, "", "???"):
        return
    folder = Path(str(path)).expanduser()
    if not (folder.is_dir() and (folder / "latest").is_file()):
        return
    target = folder.with_name(f"{folder.name.removesuffix('.ckpt')}_fp32.ckpt")
    convert = "from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict as c"
    raise UserError(
        f"ckpt_path={path} is a DeepSpeed checkpoint, a folder of ZeRO shards (trainer=deepspeed writes them); "
        "litforge reads single files. Consolidate it once, where deepspeed is installed: "
        f"python -c \"{convert}; c('{folder}', '{target}')\", then give ckpt_path={target}. "
        "The conversion unpickles the folder's files, which can run code: only for checkpoints you trust."
    )


def effective_batch_line(batch_size: int, accumulate: int, devices: int, nodes: int) -> str:
    """e.g. "effective batch size 128 = batch 32 x accumulate 2 x 2 devices x 1 node"."""
    total = batch_size * accumulate * devices * nodes
    return (
        f"effective batch size {total} = batch {batch_size} x accumulate {accumulate} x "
        f"{devices} device{'s' if devices != 1 else ''} x {nodes} node{'s' if nodes != 1 else ''}"
    )


def log_effective_batch_size(trainer: "L.Trainer", batch_size: Any) -> None:
    """One line on rank zero: the samples behind each optimizer step (data.batch_size is per device)."""
    if not trainer.is_global_zero or not isinstance(batch_size, int):
        return
    accumulate = int(trainer.accumulate_grad_batches)
    log.info("%s", effective_batch_line(batch_size, accumulate, trainer.num_devices, trainer.num_nodes))
