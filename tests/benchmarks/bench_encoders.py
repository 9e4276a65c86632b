"""Real-sized encoders: litforge's training against `transformers.Trainer` on a BERT-family model of
MiniLM-L6 size (or BERT-base; random weights), for NER and text classification, with the same data,
model (its own initial draw on each side), optimiser, schedule, batch size, max_length and threads.

Each fit is a fresh process (its peak RSS is the fit's), the variants take turns round after round,
and a figure is the median over rounds of each fit's median epoch, its first (warm-up) epoch left out.
litforge runs as `python -m litforge.train` runs: its default callbacks (checkpoints, early stopping,
LR monitor, progress), CSV logger and training metrics; the Trainer evaluates once per epoch as
litforge validates, and neither's evaluation is in the training time.

    python -m tests.benchmarks.bench_encoders [--size minilm|bert_base] [--rounds 3] [--tasks ner,text]
    python -m tests.benchmarks.bench_encoders --quick     # a tiny encoder, one round (CI runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as L

from tests.benchmarks.bench_text_encoders import TrainingTimer

THREADS = 2
SIZES = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert_base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}
# the settings of the measurements: NER batch 16 at max_length 128, classification 32 at 64
TASKS = {
    "ner": ["experiment=ner_offline", "data.max_length=128", "data.batch_size=16", "data.num_sentences={n}"],
    "text": ["experiment=text_clf_offline", "data.max_length=64", "data.batch_size=32", "data.num_examples={n}"],
}
EXAMPLES = {"ner": 600, "text": 800}
SIDES = ("litforge", "transformers.Trainer")


class EpochTimes(TrainingTimer):
    """Seconds of each training epoch up to its validation; written to `path` when the fit ends."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        samples = len(trainer.train_dataloader.dataset)
        params = sum(p.numel() for p in module.parameters())
        Path(self.path).write_text(json.dumps({"times": self.times, "samples": samples, "params": params}))


def overrides(task: str, size: str, examples: int, epochs: int, root: Path) -> list[str]:
    config = [f"model.backbone.config.{key}={value}" for key, value in SIZES[size].items()]
    data = [item.format(n=examples) for item in TASKS[task]]
    return [
        *data,
        *config,
        "model.backbone.config.max_position_embeddings=128",
        # the embedding of MiniLM's and BERT's 30522-token WordPiece vocabulary (its optimiser step
        # is a good part of a step's time); the tokenizer itself is trained on the offline corpus
        *(["+model.backbone.config.vocab_size=30522"] if size != "tiny" else ["data.vocab_size=200"]),
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "test=false",
        "extras=quiet",
        "callbacks.early_stopping=null",
        f"paths.data_dir={root / 'data'}",
    ]


def fit_litforge(args: argparse.Namespace, root: Path) -> tuple[list[float], int, int]:
    from litforge.train import train
    from tests.helpers import compose_config

    path = root / "epoch_times.json"
    timer = ["+callbacks.bench_epoch_times._target_=tests.benchmarks.bench_encoders.EpochTimes"]
    timer.append(f"+callbacks.bench_epoch_times.path={path}")
    settings = [*overrides(args.task, args.size, args.examples, args.epochs, root), *timer, *args.overrides]
    train(compose_config(settings, log_dir=root))
    fit = json.loads(path.read_text())
    return fit["times"], fit["samples"], fit["params"]


def fit_trainer(args: argparse.Namespace, root: Path) -> tuple[list[float], int, int]:
    """The task's own HF model and the data module's tokenised splits and collator, under `Trainer`
    with the optimiser, schedule and clipping of the litforge config."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer

    from tests.benchmarks.bench_text import TrainerEpochTimer, build, trainer_arguments
    from tests.helpers import compose_config

    cfg = compose_config(overrides(args.task, args.size, args.examples, args.epochs, root), log_dir=root)
    datamodule, model = build(cfg)
    timer = TrainerEpochTimer()
    evaluation = {"eval_strategy": "epoch", "per_device_eval_batch_size": cfg.data.batch_size}
    training = trainer_arguments(cfg, root / "hf_trainer", args.epochs, **evaluation)
    # HF's collators, dynamic padding as litforge's (NER pads labels with -100); the Trainer drops the
    # columns its model does not take
    collator_class = DataCollatorForTokenClassification if args.task == "ner" else DataCollatorWithPadding
    trainer = Trainer(
        model=model.model,
        args=training,
        train_dataset=datamodule.splits["train"],
        eval_dataset=datamodule.splits["validation"],
        data_collator=collator_class(datamodule.tokenizer),
        callbacks=[timer],
    )
    trainer.train()
    return timer.times, len(datamodule.splits["train"]), sum(p.numel() for p in model.model.parameters())


def one_fit(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        fit = fit_litforge if args.side == "litforge" else fit_trainer
        times, samples, params = fit(args, Path(tmp))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = samples / statistics.median(times[1:] or times)
    print(json.dumps({"samples_per_s": rate, "peak_rss_mb": peak, "params": params, "epochs": len(times)}))


def run_one(side: str, task: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, "-m", "tests.benchmarks.bench_encoders", "--one", side, "--task", task]
    command += ["--size", args.size, "--epochs", str(args.epochs), "--examples", str(args.examples or EXAMPLES[task])]
    command += args.overrides if side == "litforge" else []
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} {task} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per task and side: median samples/s and peak RSS over the rounds, ratios to the Trainer."""
    tasks = args.tasks.split(",")
    results: dict[tuple[str, str], list[dict[str, float]]] = {(t, s): [] for t in tasks for s in SIDES}
    for round_ in range(args.rounds):
        for task in tasks:
            # alternate which side goes first, so neither always runs on a warmer machine
            for side in SIDES if round_ % 2 == 0 else SIDES[::-1]:
                results[task, side].append(run_one(side, task, args))
    rows = []
    for task in tasks:
        medians = {
            side: {key: statistics.median(r[key] for r in results[task, side]) for key in results[task, side][0]}
            for side in SIDES
        }
        for side in SIDES:
            rows.append(
                {
                    "task": task,
                    "side": side,
                    **medians[side],
                    "speed_ratio": medians[side]["samples_per_s"] / medians[SIDES[1]]["samples_per_s"],
                    "rss_ratio": medians[side]["peak_rss_mb"] / medians[SIDES[1]]["peak_rss_mb"],
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="minilm")
    parser.add_argument("--tasks", default="ner,text")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=None, help="sentences (NER) / texts; default per task")
    parser.add_argument("--quick", action="store_true", help="the tiny encoder, one round of 2 epochs")
    parser.add_argument("overrides", nargs="*", help="config overrides of the litforge side, e.g. data.num_workers=2")
    parser.add_argument("--one", dest="side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=sorted(TASKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        one_fit(args)
        return
    if args.quick:
        args.size, args.rounds, args.epochs, args.examples = "tiny", 1, 2, args.examples or 120
    rows = compare(args)
    print(f"\n{args.size} encoder, {THREADS} torch threads, CPU fp32, median of {args.rounds} alternating rounds")
    print(f"{'task':<6} {'side':<22} {'params':>11} {'samples/s':>10} {'ratio':>6} {'peak RSS MB':>12} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['task']:<6} {row['side']:<22} {row['params']:>11,.0f} {row['samples_per_s']:>10.1f} "
            f"{row['speed_ratio']:>6.2f} {row['peak_rss_mb']:>12.0f} {row['rss_ratio']:>6.2f}"
        )


if __name__ == "__main__":
    main()
