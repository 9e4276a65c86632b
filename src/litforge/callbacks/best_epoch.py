"""The validation metrics of the epoch the best checkpoint was saved at, for metrics.json."""

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L


class BestEpochMetrics(L.Callback):
    """Keeps the `val/*` metrics of each validation and, once the checkpoint callback's best has
    changed, those of the validation it was chosen on.

    Lightning runs checkpoint callbacks after all others in a hook, so a new best is seen at the
    next validation's start or at the end of fit. Both snapshots travel in the checkpoint (plain
    numbers, loadable weights-only): a resumed run reports the same best epoch.
    """

    def __init__(self) -> None:
        self.best: dict[str, float] = {}
        self.latest: dict[str, float] = {}
        self.best_seen: list[Any] = ["", None]

    @property
    def validated(self) -> bool:
        """Whether any validation ran in this fit (or before the resume it continues)."""
        return bool(self.latest)

    def _follow_best(self, trainer: L.Trainer) -> None:
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None or not checkpoint.best_model_path:
            return
        score = checkpoint.best_model_score
        now = [checkpoint.best_model_path, None if score is None else float(score)]
        # without a monitor (Lightning's default checkpoint, or only last.ckpt) the latest is the best
        if now != self.best_seen or score is None:
            self.best_seen, self.best = now, dict(self.latest)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._follow_best(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.latest = {**metrics, "epoch": trainer.current_epoch}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._follow_best(trainer)

    def summary(self, last: Mapping[str, Any]) -> dict[str, float]:
        """`val/*` and `best_epoch` of the best checkpoint (of the last validation where there is
        none: those weights are then the ones tested), and `last/<name>` for every metric in
        `last`, the trainer's metrics at the end of fit."""
        chosen = dict(self.best or self.latest)
        epoch = chosen.pop("epoch", None)
        metrics = {f"last/{k}": float(v) for k, v in last.items()}
        if epoch is not None:
            metrics["best_epoch"] = epoch
            metrics["last/epoch"] = self.latest["epoch"]
        return {**metrics, **chosen}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "latest": self.latest, "best_seen": self.best_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.latest, self.best_seen = state_dict["best"], state_dict["latest"], state_dict["best_seen"]
