"""Training-epoch time of litforge (Lightning) against a hand-written PyTorch loop on the same
model, data (in memory), batch size and optimiser, and against Lightning with a bare training step
(the loss only: no logging, no training metrics), which splits the overhead into Lightning's loop
and litforge's own. Medians over rounds in which the three take turns; ratios to the hand loop."""

import statistics
import time
import types

import lightning.pytorch as L
import torch

from litforge.assembly import instantiate_datamodule, instantiate_task, prepare_datamodule
from litforge.tasks.optim import configure_optimization
from tests.helpers import compose_config

EPOCHS = 7  # the first is warm-up and not counted
ROUNDS = 3


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


def bare_step(model: L.LightningModule) -> L.LightningModule:
    """The same module training on the loss alone: nothing logged, no training metrics."""
    model.training_step = types.MethodType(lambda self, batch, batch_idx: self._step(batch)[0], model)
    model.on_train_epoch_end = types.MethodType(lambda self: None, model)
    return model


def timed_fit(model: L.LightningModule, epochs: int, fit_kwargs: dict, **trainer_kwargs) -> list[float]:
    """Seconds of each training epoch but the first, with nothing but training in the loop:
    no validation, checkpoints, loggers, progress bar or model summary."""
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=epochs,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
        **trainer_kwargs,
    )
    trainer.fit(model, **fit_kwargs)
    return timer.times[1:]


def lightning_epochs(experiment: str, bare: bool = False) -> list[float]:
    datamodule, model = build(experiment)
    if bare:
        bare_step(model)
    return timed_fit(model, EPOCHS, {"datamodule": datamodule}, accelerator="cpu")


def hand_written_epochs(experiment: str) -> list[float]:
    datamodule, model = build(experiment)
    optimizer = configure_optimization(model, model.hparams.optimizer, None, total_steps=1, monitor="")["optimizer"]
    loader = datamodule.train_dataloader()
    model.train()
    times = []
    for epoch in range(EPOCHS):
        loader.batch_sampler.sampler.set_epoch(epoch)
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
    variants = {
        "hand loop": hand_written_epochs,
        "Lightning, bare step": lambda experiment: lightning_epochs(experiment, bare=True),
        "litforge": lightning_epochs,
    }
    print(f"{'experiment':<14} {'variant':<22} {'s/epoch':>8} {'ratio':>7}")
    for experiment in ["digits_cnn", "diabetes_mlp"]:
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, epochs in variants.items():
                times[name] += epochs(experiment)
        hand = statistics.median(times["hand loop"])
        for name, epochs in times.items():
            median = statistics.median(epochs)
            print(f"{experiment:<14} {name:<22} {median:>8.4f} {median / hand:>7.2f}")
    print(f"Median of {ROUNDS} x {EPOCHS - 1} epochs per variant (each fit's first left out), variants taking turns.")


if __name__ == "__main__":
    main()
