"""How a task's network trains, not what it computes: `model.compile` (torch.compile, with
`model.compile_backend`) and `model.gradient_checkpointing` (Hugging Face backbones).

They are no hyperparameters of the task: a checkpoint rebuilds the plain network, so eval, predict
and serve run it uncompiled and need no compiler. The network is compiled in place
(`nn.Module.compile`), so its parameter names, and a checkpoint's keys, stay those of the plain
network: no `_orig_mod.` prefix for eval to strip.

torch is imported inside the functions: the config check calls `check_options` before a run starts.
"""

import logging
import os
import shutil
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from litforge.utils.errors import UserError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

# the model config's keys that are options, not task arguments, with their defaults
OPTIONS: dict[str, Any] = {"compile": False, "compile_backend": "inductor", "gradient_checkpointing": False}
CHECKPOINTING = "model.gradient_checkpointing=true"


def split_options(model_cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the task's arguments, the options with their defaults) of a plain model config."""
    kwargs = {key: value for key, value in model_cfg.items() if key not in OPTIONS}
    return kwargs, {key: model_cfg.get(key, default) for key, default in OPTIONS.items()}


def network(task: "nn.Module") -> "nn.Module | None":
    """The module a task computes with: `net` (litforge's nets, a vision backbone with its preprocessing)
    or `model` (the Hugging Face model of the text tasks); None where it has neither."""
    from torch import nn

    for name in ("net", "model"):
        module = getattr(task, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


def hf_model(task: "nn.Module") -> Any:
    """The task's Hugging Face model, None for a plain net."""
    from transformers import PreTrainedModel

    model = getattr(task, "model", None)
    return model if isinstance(model, PreTrainedModel) else None


def check_options(cfg: DictConfig) -> None:
    """Refuse, before any data is read, what cannot work: gradient checkpointing without a Hugging Face
    backbone, a backend torch does not have, inductor on a CPU without a C++ compiler."""
    model = cfg.get("model") or {}
    if model.get("gradient_checkpointing") and not model.get("backbone"):
        task = str(model.get("_target_", "")).rpartition(".")[2]
        raise UserError(
            f"{CHECKPOINTING}: it is Hugging Face's gradient checkpointing, and this model ({task}) has no "
            "Hugging Face backbone (model.backbone). Give model.gradient_checkpointing=false, or a backbone: "
            "the text tasks have one, images take e.g. model/backbone=vit_tiny."
        )
    if model.get("compile"):
        check_backend(str(model.get("compile_backend")), cfg.get("trainer") or {})


def check_backend(backend: str, trainer: Mapping[str, Any]) -> None:
    import torch

    if backend not in torch.compiler.list_backends(exclude_tags=()):
        raise UserError(
            f"model.compile_backend={backend}: torch {torch.__version__} has no such backend. Give one of "
            f"{', '.join(torch.compiler.list_backends())}, or aot_eager or eager, which only trace the network "
            "(to check that it compiles)."
        )
    accelerator = str(trainer.get("accelerator", "auto"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    # inductor's own choice of compiler on Linux and macOS: $CXX, else g++ (clang++ on macOS)
    compiler = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
    if backend == "inductor" and on_cpu and shutil.which(compiler) is None:
        source = "$CXX" if os.environ.get("CXX") else "inductor's default"
        raise UserError(
            f"model.compile=true with model.compile_backend=inductor builds C++ kernels on a CPU, and the C++ "
            f"compiler {compiler} ({source}) is not found here. Install g++ (or set CXX to a C++ compiler), or give "
            "model.compile_backend=aot_eager to check that the network compiles."
        )


def apply_options(task: "nn.Module", options: Mapping[str, Any]) -> None:
    """Gradient checkpointing, then torch.compile, as `options` (see `split_options`) ask."""
    if options.get("gradient_checkpointing"):
        enable_gradient_checkpointing(task)
    if options.get("compile"):
        compile_network(task, str(options.get("compile_backend") or "inductor"))


def enable_gradient_checkpointing(task: "nn.Module") -> None:
    """Hugging Face's gradient checkpointing on the task's model: activations of each layer are
    recomputed in the backward pass instead of kept (less memory, about a third more compute)."""
    model = hf_model(task)
    name = type(task).__name__
    if model is None:
        raise UserError(f"{CHECKPOINTING}: {name} has no Hugging Face model to checkpoint (a plain net).")
    if not model.supports_gradient_checkpointing:
        raise UserError(
            f"{CHECKPOINTING}: {type(model).__name__} (model_type {model.config.model_type}) does not support "
            "Hugging Face's gradient checkpointing. Give model.gradient_checkpointing=false, or a backbone that "
            "supports it (BERT, RoBERTa, DistilBERT, ViT, DINOv2, ...)."
        )
    # the non-reentrant variant: it works with frozen layers and inputs that need no gradient
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    log.info("gradient checkpointing on %s: is_gradient_checkpointing=%s", type(model).__name__, checkpointing(model))


def checkpointing(model: Any) -> bool:
    """Whether Hugging Face reports gradient checkpointing on for `model`; transformers' later releases
    name it activation checkpointing and keep the older names as deprecated aliases."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)


def compile_network(task: "nn.Module", backend: str) -> None:
    """torch.compile the task's network in place; the first steps of each input shape compile it."""
    module = network(task)
    if module is None:
        raise UserError(
            f"model.compile=true: {type(task).__name__} has no network litforge knows to compile "
            "(an nn.Module attribute `net` or `model`)."
        )
    module.compile(backend=backend)
    log.info("torch.compile: %s compiled with backend %s (its first steps compile)", type(module).__name__, backend)
