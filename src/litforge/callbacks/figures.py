import logging
from pathlib import Path

import lightning.pytorch as L
import matplotlib.pyplot as plt

log = logging.getLogger(__name__)


class SaveFigures(L.Callback):
    """At the end of testing, saves each figure of the task's `figures()` as `<dirpath>/<name>.png`."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        figures = pl_module.figures() if hasattr(pl_module, "figures") else {}
        for name, figure in figures.items():
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)
                path = self.dirpath / f"{name}.png"
                figure.savefig(path, dpi=120)
                log.info("saved %s", path)
            plt.close(figure)
