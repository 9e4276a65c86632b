import hashlib
import json
import logging
from typing import Any

import lightning.pytorch as L

from litforge.utils.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger(__name__)


class StoreRunConfig(L.Callback):
    """Puts the run's resolved config into every checkpoint, weights-only ones included, so eval
    needs only the checkpoint; each process logs a digest of the config it runs, so DDP ranks can
    be seen to agree."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        log.info(
            "rank %d of %d runs config %s in %s",
            trainer.global_rank,
            trainer.world_size,
            self.digest,
            self.config["paths"]["output_dir"],
        )
        # the checkpoint IO writes it, since weights-only saves skip callbacks' on_save_checkpoint
        io = trainer.strategy.checkpoint_io
        while not isinstance(io, AtomicCheckpointIO) and hasattr(io, "checkpoint_io"):
            io = io.checkpoint_io
        if not isinstance(io, AtomicCheckpointIO):
            raise RuntimeError(f"StoreRunConfig needs the trainer to save through AtomicCheckpointIO, not {io}")
        io.extra["litforge"] = {"config": self.config}
