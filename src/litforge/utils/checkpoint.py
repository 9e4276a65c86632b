from pathlib import Path
from typing import Any

from litforge.utils.errors import UserError


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded with torch's weights-only (no code execution) unpickler."""
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        raise UserError(
            f"ckpt_path={path}: not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:100]}). "
            "Give a .ckpt file written by litforge.train (e.g. <run dir>/checkpoints/last.ckpt)."
        ) from err
    if not isinstance(checkpoint, dict) or "litforge" not in checkpoint:
        raise UserError(
            f"ckpt_path={path}: not a litforge checkpoint (it carries no run config). "
            "Give a .ckpt file written by litforge.train."
        )
    return checkpoint


def check_checkpoint_task(path: Path, target: str) -> None:
    """Refuse to continue training from a checkpoint of another task (its weights would not fit)."""
    trained = load_checkpoint(path)["litforge"]["config"]["model"]["_target_"]
    if trained != target:
        raise UserError(
            f"ckpt_path={path} holds a {trained.rsplit('.', 1)[-1]}, but this run trains a "
            f"{target.rsplit('.', 1)[-1]} (model._target_). Give a checkpoint of the same task, or "
            "choose the matching experiment/model."
        )
