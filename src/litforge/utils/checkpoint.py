from collections.abc import Iterator
from pathlib import Path
from typing import Any

from litforge.tasks.registry import DATA_MODULES, TASK_DATA
from litforge.utils.errors import UserError

# What the parts of a checkpoint that eval rebuilds (task, its net/optimiser/scheduler, data) may
# name as `_target_`: a checkpoint is data from anywhere, and any other callable named there would run.
SAFE_TARGET_PREFIXES = ("litforge.nets.", "litforge.tasks.", "litforge.data.", "torch.optim.")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded with torch's weights-only (no code execution) unpickler."""
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
    check_checkpoint_targets(checkpoint, path)
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


def check_checkpoint_targets(checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose rebuilt parts name anything but litforge's own classes, before
    anything it names is imported or called: its task and data module must be litforge's, and
    every other `_target_` in them a litforge net/task/data class or a torch optimiser/scheduler."""
    config = checkpoint["litforge"].get("config")
    config = config if isinstance(config, dict) else {}
    model, data = config.get("model") or {}, config.get("data") or {}
    roots = {
        "config.model": model,
        "config.data": data,
        "hyper_parameters": checkpoint.get("hyper_parameters") or {},
        "datamodule_hyper_parameters": checkpoint.get("datamodule_hyper_parameters") or {},
    }
    refused = [("config.model._target_", model.get("_target_"))] if model.get("_target_") not in TASK_DATA else []
    if data and data.get("_target_") not in DATA_MODULES:
        refused.append(("config.data._target_", data.get("_target_")))
    for root, tree in roots.items():
        refused += [(w, t) for w, t in find_targets(tree, root) if not str(t).startswith(SAFE_TARGET_PREFIXES)]
    if refused:
        where, target = refused[0]
        prefixes = ", ".join(p.rstrip(".") for p in SAFE_TARGET_PREFIXES)
        raise UserError(
            f"ckpt_path={path}: {where} is {target!r}, which is not one of litforge's own classes; a checkpoint "
            f"may only rebuild a litforge task ({', '.join(sorted(TASK_DATA))}), a litforge data module, and nets, "
            f"optimisers and schedulers under {prefixes}. Nothing it names was imported or run. Use checkpoints "
            "written by litforge.train that you trust."
        )


def check_checkpoint_task(path: Path, target: str) -> None:
    """Refuse to continue training from a checkpoint of another task (its weights would not fit)."""
    trained = load_checkpoint(path)["litforge"]["config"]["model"]["_target_"]
    if trained != target:
        raise UserError(
            f"ckpt_path={path} holds a {trained.rsplit('.', 1)[-1]}, but this run trains a "
            f"{target.rsplit('.', 1)[-1]} (model._target_). Give a checkpoint of the same task, or "
            "choose the matching experiment/model."
        )
