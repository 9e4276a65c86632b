"""Text classification on the offline tiny BERT: training throughput of litforge against Hugging Face
`transformers.Trainer` (same model, data and settings, CPU, fp32), and the token cache: data
preparation into an empty cache against a second run that reuses it. Medians; ratios in-process."""

import statistics
import tempfile
import time
from pathlib import Path

import datasets
import lightning.pytorch as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from transformers import (
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from litforge.assembly import instantiate_datamodule, instantiate_task, prepare_datamodule
from tests.benchmarks.bench_overhead import timed_fit
from tests.helpers import compose_config

EPOCHS = 4  # the first of each fit is warm-up and not counted
ROUNDS = 2  # fits of each variant, taking turns with the others
THREADS = 2
PREP_RUNS = 4
TRAINER = "transformers.Trainer, padded to max_length"


class TrainerEpochTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_epoch_begin(self, args: TrainingArguments, state: object, control: object, **kwargs: object) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, args: TrainingArguments, state: object, control: object, **kwargs: object) -> None:
        self.times.append(time.perf_counter() - self.start)


def text_config(root: Path, *overrides: str) -> DictConfig:
    return compose_config(["experiment=text_clf_offline", f"paths.data_dir={root / 'data'}", *overrides], log_dir=root)


def build(cfg: DictConfig) -> tuple[object, L.LightningModule]:
    datamodule = instantiate_datamodule(cfg.data)
    prepare_datamodule(datamodule)
    torch.manual_seed(0)
    return datamodule, instantiate_task(cfg.model, datamodule.model_kwargs())


def padded_to_max_length(loader: DataLoader, tokenizer: PreTrainedTokenizerBase, max_length: int) -> DataLoader:
    loader.collate_fn = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
    return loader


def litforge_epochs(
    cfg: DictConfig, pad_to_max_length: bool, accelerator: str = "cpu", precision: str = "32-true"
) -> tuple[list[float], int]:
    datamodule, model = build(cfg)
    loader = datamodule.train_dataloader()
    if pad_to_max_length:
        loader = padded_to_max_length(loader, datamodule.tokenizer, cfg.data.max_length)
    epochs = timed_fit(
        model,
        EPOCHS,
        {"train_dataloaders": loader},
        accelerator=accelerator,
        precision=precision,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
    )
    return epochs, len(loader.dataset)


def trainer_arguments(cfg: DictConfig, output_dir: Path, epochs: int, **settings: object) -> TrainingArguments:
    """The Trainer's arguments for a litforge text config: its batch size, AdamW (torch) settings, linear
    schedule and warm-up, clipping and seed, on the CPU, saving nothing; `settings` add to them."""
    optimizer = cfg.model.optimizer
    # the Trainer's default optimiser is torch's fused AdamW, which litforge picks too (fused: null)
    optim = "adamw_torch" if optimizer.get("fused") is False else "adamw_torch_fused"
    return TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=True,
        num_train_epochs=epochs,
        per_device_train_batch_size=cfg.data.batch_size,
        optim=optim,
        learning_rate=optimizer.lr,
        weight_decay=optimizer.weight_decay,
        adam_beta1=optimizer.betas[0],
        adam_beta2=optimizer.betas[1],
        lr_scheduler_type="linear",
        warmup_steps=cfg.model.scheduler.warmup_ratio,  # a ratio where below 1
        max_grad_norm=cfg.trainer.gradient_clip_val,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=cfg.seed,
        **settings,
    )


def trainer_epochs(cfg: DictConfig, output_dir: Path) -> tuple[list[float], int]:
    """`transformers.Trainer` on the data module's tokenised training split and the task's own HF
    model, padded to max_length, with the optimiser, schedule and clipping of the litforge config."""
    datamodule, model = build(cfg)
    timer = TrainerEpochTimer()
    args = trainer_arguments(cfg, output_dir, EPOCHS, eval_strategy="no", logging_strategy="no")
    collator = DataCollatorWithPadding(datamodule.tokenizer, padding="max_length", max_length=cfg.data.max_length)
    train = datamodule.splits["train"]
    trainer = Trainer(model=model.model, args=args, train_dataset=train, data_collator=collator, callbacks=[timer])
    trainer.train()
    return timer.times[1:], len(train)


def throughput() -> list[tuple[str, float, float]]:
    """(variant, samples/s, ratio to Trainer) for Trainer and three litforge loaders, each the median
    epoch of ROUNDS fits that take turns with the other variants'."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = text_config(root)
        grouped = text_config(root, "data.group_by_length=true")
        variants = {
            TRAINER: lambda: trainer_epochs(cfg, root / "hf_trainer"),
            "litforge, padded to max_length": lambda: litforge_epochs(cfg, pad_to_max_length=True),
            "litforge, dynamic padding (its default)": lambda: litforge_epochs(cfg, pad_to_max_length=False),
            "litforge, dynamic padding + group_by_length": lambda: litforge_epochs(grouped, pad_to_max_length=False),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        samples = {}
        for _ in range(ROUNDS):
            for name, fit in variants.items():
                epochs, samples[name] = fit()
                times[name] += epochs
    rates = {name: samples[name] / statistics.median(epochs) for name, epochs in times.items()}
    return [(name, rate, rate / rates[TRAINER]) for name, rate in rates.items()]


# on a GPU the tiny BERT is too small to measure precision on: a BERT-base-sized encoder, padded to 128
GPU_OVERRIDES = (
    "model.backbone.config.hidden_size=768",
    "model.backbone.config.num_hidden_layers=12",
    "model.backbone.config.num_attention_heads=12",
    "model.backbone.config.intermediate_size=3072",
    "model.backbone.config.max_position_embeddings=128",
    "data.max_length=128",
    "data.batch_size=64",
)


def mixed_precision_speedup(accelerator: str, half: str) -> tuple[float, float]:
    """samples/s at 32-true and at `half` (16-mixed on a GPU), each the median epoch of ROUNDS fits."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = text_config(Path(tmp), *GPU_OVERRIDES)
        times: dict[str, list[float]] = {"32-true": [], half: []}
        for _ in range(ROUNDS):
            for precision in times:
                epochs, samples = litforge_epochs(cfg, True, accelerator, precision)
                times[precision] += epochs
    full, mixed = (samples / statistics.median(times[p]) for p in ("32-true", half))
    return full, mixed


def preparation_seconds(root: Path, run: str) -> float:
    """prepare_data + setup of every split (corpus, tokenizer, tokens) with the cache under `root`;
    each call is a new run with its own tokenizer folder, as a new run directory would have."""
    cfg = text_config(root, f"data.tokenizer_dir={root / run / 'tokenizer'}")
    datamodule = instantiate_datamodule(cfg.data)
    start = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup()
    return time.perf_counter() - start


def token_cache() -> tuple[float, float]:
    """Median seconds of data preparation into an empty cache and of a second run reusing it."""
    first, second = [], []
    for run in range(PREP_RUNS + 1):
        with tempfile.TemporaryDirectory() as tmp:
            seconds = preparation_seconds(Path(tmp), "first"), preparation_seconds(Path(tmp), "second")
        # the first pair imports and warms up what preparation uses
        if run:
            first.append(seconds[0])
            second.append(seconds[1])
    return statistics.median(first), statistics.median(second)


def main() -> None:
    torch.set_num_threads(THREADS)
    datasets.disable_progress_bars()
    rows = throughput()
    first, second = token_cache()
    print(f"{'text classification, tiny BERT, training':<46} {'samples/s':>10} {'ratio':>7}")
    for name, rate, ratio in rows:
        print(f"{name:<46} {rate:>10.0f} {ratio:>7.2f}")
    print(
        f"Equal on both sides: model and initial weights, {THREADS} torch threads, fp32 on CPU, the same tokenised "
        "training split, max_length, batch size, AdamW (torch, same lr, betas, weight decay off biases and norms), "
        "linear schedule with the same warm-up, gradient clipping; no evaluation, checkpoints, loggers or progress "
        "bars. litforge also scores its training metrics (accuracy, macro F1, precision, recall) once per epoch, as "
        f"in every run. Median of {ROUNDS} x {EPOCHS - 1} epochs, each fit's warm-up epoch left out; "
        "ratio = litforge / Trainer samples/s."
    )
    print()
    print(f"{'token cache, data preparation':<46} {'median s':>10}")
    print(f"{'first run, empty cache (trains tokenizer)':<46} {first:>10.2f}")
    print(f"{'second run, from the cache':<46} {second:>10.2f}")
    print(f"{'first / second':<46} {first / second:>10.1f}")
    print()
    if not torch.cuda.is_available():
        print("16-mixed vs 32-true: no CUDA GPU here, not measured")
        return
    full, mixed = mixed_precision_speedup("cuda", "16-mixed")
    print(f"text classification on {torch.cuda.get_device_name()}, BERT-base-sized, max_length 128, batch 64")
    print(f"{'32-true samples/s':<46} {full:>10.0f}")
    print(f"{'16-mixed samples/s':<46} {mixed:>10.0f}")
    print(f"{'speed-up 16-mixed / 32-true':<46} {mixed / full:>10.2f}")


if __name__ == "__main__":
    main()
