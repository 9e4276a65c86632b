import importlib.util
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from litforge.tasks.registry import DATA_MODULES, TASK_DATA
from litforge.utils.errors import UserError

# What the parts of a checkpoint that eval rebuilds (task, its net/optimiser/scheduler, data) may
# name as `_target_`: a checkpoint is data from anywhere, and any other callable named there would run.
SAFE_TARGET_PREFIXES = ("litforge.nets.", "litforge.tasks.", "litforge.data.", "torch.optim.")
# packages `trusted_modules` may not name (nor anything in them): the libraries litforge runs on,
# whose callables could do anything a checkpoint asks; with the standard library (sys.stdlib_module_names)
UNTRUSTABLE_PACKAGES = frozenset(
    ("torch", "torchvision", "torchmetrics", "lightning", "lightning_fabric", "pytorch_lightning", "hydra")
    + ("hydra_plugins", "omegaconf", "numpy", "scipy", "pandas", "sklearn", "matplotlib", "transformers")
    + ("datasets", "tokenizers", "huggingface_hub", "mlflow", "wandb", "optuna", "rich", "litforge", "pip")
    + ("setuptools", "_pytest", "pytest")
)


def trusted_prefixes(modules: Iterable[str] | str | None) -> tuple[str, ...]:
    """The `trusted_modules` of the current run, each checked to name a package of the user's own:
    not the standard library, not a library litforge runs on (litforge's own task/data/net modules aside)."""
    modules = [modules] if isinstance(modules, str) else list(modules or ())
    for name in modules:
        shown = f"trusted_modules=[{', '.join(map(str, modules))}]: {name!r}"
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise UserError(
                f"{shown} is not a module name; give the dotted names of the packages of your own tasks and "
                "data modules, e.g. trusted_modules=[mylab.tasks]"
            )
        top = name.split(".", 1)[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            why = "is part of Python's standard library"
        elif top in UNTRUSTABLE_PACKAGES and not (name + ".").startswith(SAFE_TARGET_PREFIXES):
            why = f"is in {top}, a library litforge runs on"
        else:
            continue
        raise UserError(
            f"{shown} {why}, whose callables a checkpoint could run. trusted_modules takes only the packages "
            "of your own task and data modules (e.g. trusted_modules=[mylab.tasks]); litforge's own are "
            "trusted already."
        )
    return tuple(modules)


def _own_class_path(target: Any) -> bool:
    """Whether `target` under SAFE_TARGET_PREFIXES is `<module>.<Name>` with the module one of
    litforge's files (or torch.optim / torch.optim.lr_scheduler and a class name), told without
    running the module: `litforge.tasks.regression.torch.hub.load` would reach through an import."""
    module, _, name = str(target).rpartition(".")
    if not name.isidentifier():
        return False
    if module.startswith("torch."):
        return module in ("torch.optim", "torch.optim.lr_scheduler") and name[0].isupper()
    spec = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        if spec is not None and spec.submodule_search_locations is None:
            return False
        # imports only the packages above (empty __init__ files), never the module itself
        try:
            spec = importlib.util.find_spec(".".join(parts[:depth]))
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
    return True


def _under(name: Any, modules: tuple[str, ...]) -> bool:
    return isinstance(name, str) and any(name == module or name.startswith(module + ".") for module in modules)


def _trusted(target: Any, trusted: tuple[str, ...]) -> bool:
    return _under(target, trusted) and target not in trusted


def _check_defined_in_trusted(where: str, target: str, trusted: tuple[str, ...], path: Path) -> None:
    """A trusted `_target_` must be a class or function its module defines, not one it imported
    (`mylab.tasks.os.system` would pass the name check alone)."""
    import importlib

    module, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except Exception as err:
        raise UserError(
            f"ckpt_path={path}: {where} is {target!r}, under trusted_modules, but {module} has no {name} "
            f"that can be imported ({type(err).__name__}: {err}). Give the class's own module.class path."
        ) from err
    defined = getattr(found, "__module__", None)
    if not callable(found) or not _under(defined, trusted):
        raise UserError(
            f"ckpt_path={path}: {where} is {target!r}, under trusted_modules, but it is not a class or function "
            f"defined there (it comes from {defined or 'nowhere'}); only the classes of trusted_modules' own "
            "files may be rebuilt. Nothing it names was run."
        )


def load_checkpoint(path: Path, trusted_modules: Iterable[str] = ()) -> dict[str, Any]:
    """The checkpoint's contents, loaded with torch's weights-only (no code execution) unpickler;
    `trusted_modules` (the current run's, never the checkpoint's) may name its task and data modules."""
    trusted = trusted_prefixes(trusted_modules)
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        reason = (str(err).splitlines() or ["empty file" if path.stat().st_size == 0 else "no detail"])[0][:100]
        raise UserError(
            f"ckpt_path={path}: not a readable checkpoint ({type(err).__name__}: {reason}). "
            "Give a .ckpt file written by litforge.train (e.g. <run dir>/checkpoints/last.ckpt)."
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("litforge"), dict):
        raise UserError(
            f"ckpt_path={path}: not a litforge checkpoint (it carries no run config). "
            "Give a .ckpt file written by litforge.train."
        )
    check_checkpoint_targets(checkpoint, path, trusted)
    return checkpoint


def find_targets(tree: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every `_target_` in nested dicts and lists, with its dotted location."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "_target_":
                yield f"{where}._target_", value
            else:
                yield from find_targets(value, f"{where}.{key}")
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            yield from find_targets(value, f"{where}[{i}]")


def check_checkpoint_targets(checkpoint: dict[str, Any], path: Path, trusted_modules: Iterable[str] = ()) -> None:
    """Refuse a checkpoint whose rebuilt parts name anything but litforge's own classes, before
    anything it names is imported or called: its task and data module must be litforge's, and
    every other `_target_` in them a litforge net/task/data class or a torch optimiser/scheduler;
    or a class under one of `trusted_modules` (checked already by `trusted_prefixes`)."""
    trusted = tuple(trusted_modules)
    config = checkpoint["litforge"].get("config")
    config = config if isinstance(config, dict) else {}
    model, data = config.get("model") or {}, config.get("data") or {}
    roots = {
        "config.model": model,
        "config.data": data,
        "hyper_parameters": checkpoint.get("hyper_parameters") or {},
        "datamodule_hyper_parameters": checkpoint.get("datamodule_hyper_parameters") or {},
    }
    refused = []
    if model.get("_target_") not in TASK_DATA and not _trusted(model.get("_target_"), trusted):
        refused.append(("config.model._target_", model.get("_target_")))
    if data and data.get("_target_") not in DATA_MODULES and not _trusted(data.get("_target_"), trusted):
        refused.append(("config.data._target_", data.get("_target_")))
    for root, tree in roots.items():
        refused += [
            (w, t)
            for w, t in find_targets(tree, root)
            if not (str(t).startswith(SAFE_TARGET_PREFIXES) and _own_class_path(t)) and not _trusted(t, trusted)
        ]
    if refused:
        where, target = refused[0]
        prefixes = ", ".join(p.rstrip(".") for p in SAFE_TARGET_PREFIXES)
        raise UserError(
            f"ckpt_path={path}: {where} is {target!r}, which is not one of litforge's own classes; a checkpoint "
            f"may only rebuild a litforge task ({', '.join(sorted(TASK_DATA))}), a litforge data module, and nets, "
            f"optimisers and schedulers under {prefixes}. Nothing it names was imported or run. "
            f"{_how_to_trust([t for _, t in refused])}"
        )
    for root, tree in roots.items():
        for where, target in find_targets(tree, root):
            if _trusted(target, trusted) and not str(target).startswith(SAFE_TARGET_PREFIXES):
                _check_defined_in_trusted(where, target, trusted, path)


def _how_to_trust(targets: list[Any]) -> str:
    """What to do about refused `_target_`s: trust their modules if they may be the user's own."""
    modules = list(dict.fromkeys(str(target).rpartition(".")[0] for target in targets))
    try:
        trusted_prefixes(modules)
    except UserError:
        return "Use checkpoints written by litforge.train that you trust."
    return (
        f"If {', '.join(modules)} {'is' if len(modules) == 1 else 'are'} your own code and you trust this "
        f"checkpoint, allow it with trusted_modules=[{','.join(modules)}] (or a package above)."
    )


def check_checkpoint_task(path: Path, target: str, trusted_modules: Iterable[str] = ()) -> None:
    """Refuse to continue training from a checkpoint of another task (its weights would not fit)."""
    trained = load_checkpoint(path, trusted_modules)["litforge"]["config"]["model"]["_target_"]
    if trained != target:
        raise UserError(
            f"ckpt_path={path} holds a {trained.rsplit('.', 1)[-1]}, but this run trains a "
            f"{target.rsplit('.', 1)[-1]} (model._target_). Give a checkpoint of the same task, or "
            "choose the matching experiment/model."
        )


def load_weights_to_fine_tune(model: Any, path: Path) -> bool:
    """Load the weights of a weights-only checkpoint (a best_epoch_*.ckpt) into `model`, to start a
    new fit from them; False for a full checkpoint, which Lightning's fit resumes exactly."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "optimizer_states" in checkpoint:
        return False
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise UserError(
            f"ckpt_path={path}: its weights do not fit this run's model ({str(err).splitlines()[0]}). "
            "Train with the model and data settings of the run that wrote it."
        ) from err
    return True
