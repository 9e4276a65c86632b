"""Training-epoch time of litforge (Lightning) against a hand-written PyTorch loop on the same
model, data (in memory), batch size and optimiser. Prints medians and their ratio."""

import statistics
import time

import lightning.pytorch as L
import torch

from litforge.tasks.optim import configure_optimization
from litforge.utils.build import instantiate_datamodule, instantiate_task, prepare_datamodule
from tests.helpers import compose_config

EPOCHS = 7  # the first is warm-up and not counted


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times.append(time.perf_counter() - self.start)


def build(experiment: str):
    cfg = compose_config([f"experiment={experiment}"])
    datamodule = instantiate_datamodule(cfg.data)
    prepare_datamodule(datamodule)
    torch.manual_seed(0)
    return datamodule, instantiate_task(cfg.model, datamodule.model_kwargs())


def lightning_epochs(experiment: str) -> list[float]:
    datamodule, model = build(experiment)
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=datamodule)
    return timer.times[1:]


def hand_written_epochs(experiment: str) -> list[float]:
    datamodule, model = build(experiment)
    optimizer = configure_optimization(model, model.hparams.optimizer, None, total_steps=1, monitor="")["optimizer"]
    loader = datamodule.train_dataloader()
    model.train()
    times = []
    for epoch in range(EPOCHS):
        loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for batch in loader:
            x, y = datamodule.on_after_batch_transfer(batch, 0)
            loss = model._step((x, y))[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    rows = []
    for experiment in ["digits_cnn", "diabetes_mlp"]:
        hand = statistics.median(hand_written_epochs(experiment))
        lit = statistics.median(lightning_epochs(experiment))
        rows.append((experiment, hand, lit, lit / hand))
    print(f"{'experiment':<14} {'hand loop s/epoch':>18} {'litforge s/epoch':>17} {'ratio':>7}")
    for experiment, hand, lit, ratio in rows:
        print(f"{experiment:<14} {hand:>18.4f} {lit:>17.4f} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
