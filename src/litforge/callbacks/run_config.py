from typing import Any

import lightning.pytorch as L


class StoreRunConfig(L.Callback):
    """Puts the run's resolved config into every checkpoint, so eval needs only the checkpoint."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["litforge"] = {"config": self.config}
