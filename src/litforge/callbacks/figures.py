import logging
from pathlib import Path

import lightning.pytorch as L
import matplotlib.pyplot as plt

from litforge.tracking import log_figures

log = logging.getLogger(__name__)


class SaveFigures(L.Callback):
    """At the end of testing, saves each figure of the task's `figures()` as `<dirpath>/<name>.png`
    and hands the files to the run's trackers (MLflow artifacts, W&B and TensorBoard images)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        figures = pl_module.figures() if hasattr(pl_module, "figures") else {}
        saved = {}
        for name, figure in figures.items():
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)
                path = self.dirpath / f"{name}.png"
                figure.savefig(path, dpi=120)
                log.info("saved %s", path)
                saved[name] = path
            plt.close(figure)
        if saved:
            log_figures(trainer, saved)
