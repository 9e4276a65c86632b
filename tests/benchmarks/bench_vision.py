"""Training images/s of a vision backbone (model/backbone=resnet_tiny and vit_tiny on digits, resized
on the device to 32x32 RGB) through litforge's training against a hand-written PyTorch loop on the same
model, data, batch size and optimiser. Medians over rounds in which the two take turns."""

import statistics
import time

import torch

from litforge.assembly import instantiate_datamodule, instantiate_task, prepare_datamodule
from litforge.tasks.optim import configure_optimization
from tests.benchmarks.bench_overhead import timed_fit
from tests.helpers import compose_config

EPOCHS = 4  # the first is warm-up and not counted
ROUNDS = 3


def build(backbone: str):
    cfg = compose_config(["data=digits", f"model/backbone={backbone}", "model.export_dir=null"])
    datamodule = instantiate_datamodule(cfg.data)
    prepare_datamodule(datamodule)
    torch.manual_seed(0)
    return datamodule, instantiate_task(cfg.model, datamodule.model_kwargs())


def litforge_epochs(backbone: str) -> tuple[list[float], int]:
    datamodule, model = build(backbone)
    times = timed_fit(model, EPOCHS, {"datamodule": datamodule}, accelerator="cpu")
    return times, len(datamodule.splits["train"])


def hand_written_epochs(backbone: str) -> tuple[list[float], int]:
    datamodule, model = build(backbone)
    optimizer = configure_optimization(model, model.hparams.optimizer, None, total_steps=1, monitor="")["optimizer"]
    loader = datamodule.train_dataloader()
    model.train()
    times = []
    for epoch in range(EPOCHS):
        loader.batch_sampler.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for batch in loader:
            x, y = datamodule.on_after_batch_transfer(batch, 0)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times[1:], len(datamodule.splits["train"])


def main() -> None:
    variants = {"hand loop": hand_written_epochs, "litforge": litforge_epochs}
    print(f"{'backbone':<12} {'variant':<10} {'images/s':>9} {'ratio':>7}")
    for backbone in ("resnet_tiny", "vit_tiny"):
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, epochs in variants.items():
                times, images = epochs(backbone)
                rates[name] += [images / t for t in times]
        hand = statistics.median(rates["hand loop"])
        for name, values in rates.items():
            median = statistics.median(values)
            print(f"{backbone:<12} {name:<10} {median:>9.0f} {median / hand:>7.2f}")
    print(f"Median of {ROUNDS} x {EPOCHS - 1} epochs per variant (each fit's first left out), variants taking turns.")


if __name__ == "__main__":
    main()
