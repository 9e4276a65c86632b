"""BiLSTM and TextCNN against tiny BERT on the offline text sets: test accuracy (text classification,
generated reviews) and entity F1 (NER, generated news), and training samples/s, each model trained
from scratch with its experiment's settings (epochs, learning rate, schedule) and the same seed.

    python -m tests.benchmarks.bench_text_encoders [--threads 2] [--accelerator cpu]

A run trains as `python -m litforge.train experiment=<name>` does (checkpoint on the monitored metric,
test on the best) without loggers or progress bars; samples/s is the training split's size over the
median training-epoch time (validation left out), the first epoch being warm-up.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from litforge.assembly import instantiate_datamodule, instantiate_task, prepare_datamodule
from tests.helpers import compose_config

SEED = 42
VARIANTS = {
    "text classification": (
        "test/acc",
        {
            "tiny BERT": ["experiment=text_clf_offline"],
            "BiLSTM": ["experiment=text_clf_bilstm"],
            "TextCNN": ["experiment=text_clf_bilstm", "model/backbone=textcnn"],
        },
    ),
    "NER": (
        "test/f1",
        {
            "tiny BERT": ["experiment=ner_offline"],
            "BiLSTM": ["experiment=ner_bilstm"],
            "TextCNN": ["experiment=ner_bilstm", "model/backbone=textcnn"],
        },
    ),
}


class TrainingTimer(L.Callback):
    """Seconds of each epoch's training batches: from the epoch's start to its validation (or end)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def _stop(self) -> None:
        if self.start is not None:
            self.times.append(time.perf_counter() - self.start)
            self.start = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()


def run(overrides: list[str], metric: str, root: Path, accelerator: str) -> tuple[float, float, int]:
    """(test metric, training samples/s, parameters) of one training run."""
    cfg = compose_config([*overrides, f"seed={SEED}", f"paths.data_dir={root / 'data'}"], log_dir=root / "logs")
    L.seed_everything(SEED, workers=True, verbose=False)
    datamodule = instantiate_datamodule(cfg.data)
    prepare_datamodule(datamodule, "fit")
    model = instantiate_task(cfg.model, datamodule.model_kwargs())
    timer = TrainingTimer()
    checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", monitor=cfg.model.monitor, mode=cfg.model.mode)
    trainer = L.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer, checkpoint],
        default_root_dir=root / "run",
    )
    trainer.fit(model, datamodule=datamodule)
    (scores,) = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)
    samples = len(datamodule.splits["train"])
    parameters = sum(p.numel() for p in model.parameters())
    return scores[metric], samples / statistics.median(timer.times[1:]), parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    header = f"{'task':<20} {'model':<10} {'metric':<9} {'value':>6} {'samples/s':>10} {'params':>9}  overrides"
    rows = []
    for task, (metric, variants) in VARIANTS.items():
        for name, overrides in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                score, rate, parameters = run(overrides, metric, Path(tmp), args.accelerator)
            rows.append(f"{task:<20} {name:<10} {metric:<9} {score:>6.3f} {rate:>10.0f} {parameters:>9,}  ")
            rows[-1] += " ".join(overrides)
            print(f"{header}\n{rows[-1]}", flush=True)
    print(f"\nseed {SEED}, {args.threads} torch threads, {args.accelerator}, fp32")
    print("\n".join([header, *rows]))


if __name__ == "__main__":
    main()
