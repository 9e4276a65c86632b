"""Pruning: the epochs and seconds an Optuna search spends with `hydra.sweeper.pruner=median|hyperband`
against the same search unpruned (same seed, same trial count), and what it costs to reach the
unpruned study's best validation value (within 0.5 points). Offline digits CNN search; each study
is one `python -m litforge.train -m hparams_search=digits_optuna` process.

    python -m tests.benchmarks.bench_pruning [--trials 16] [--epochs 8] [--seed 0] [--quick]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna

from tests.helpers import QUIET, check_ok, run_cli

TOLERANCE = 0.005
PRUNERS = {
    "none": [],
    "median": ["+hydra.sweeper.pruner_settings.n_startup_trials=4"],
    "hyperband": [],
    "successive_halving": [],
}


def run_study(pruner: str, trials: int, epochs: int, seed: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        log_dir, storage = Path(tmp), f"sqlite:///{tmp}/study.db"
        sweep = log_dir / "sweep"
        search = [
            "-m",
            *QUIET,
            *extra,
            "hparams_search=digits_optuna",
            f"trainer.max_epochs={epochs}",
            "callbacks.early_stopping=null",
            f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.sampler.seed={seed}",
            f"hydra.sweeper.pruner={pruner}",
            *PRUNERS[pruner],
            f"hydra.sweeper.storage={storage}",
            f"hydra.sweep.dir={sweep}",
            f"seed={seed}",
        ]
        start = time.perf_counter()
        check_ok(run_cli("litforge.train", search, log_dir, env={"OMP_NUM_THREADS": "2"}))
        seconds = time.perf_counter() - start
        study = optuna.load_study(study_name="digits_cnn", storage=storage)
        rows = []
        for trial in study.get_trials():
            metrics = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
            # a pruned trial's value is its last report; its best validation counts as what it found
            rows.append((trial.number, int(metrics["last/epoch"]) + 1, metrics["val/acc"], trial.state.name))
    return {"seconds": seconds, "rows": rows}


def epochs_to_reach(rows: list[tuple], target: float) -> int | None:
    """Epochs trained (trials in order) until one reached `target`; None if none did."""
    spent = 0
    for _, epochs, value, _ in rows:
        spent += epochs
        if value >= target - TOLERANCE:
            return spent
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny jobs (CI: checks that the benchmark runs)")
    args = parser.parse_args()
    extra = ["trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
    if args.quick:
        args.trials, args.epochs = 4, 2
    results = {p: run_study(p, args.trials, args.epochs, args.seed, extra if args.quick else []) for p in PRUNERS}
    base = results["none"]
    best = max(value for _, _, value, _ in base["rows"])
    base_epochs = sum(e for _, e, _, _ in base["rows"])
    print(f"digits CNN, {args.trials} trials x {args.epochs} epochs, seed {args.seed}; unpruned best {best:.4f}")
    print(f"{'pruner':<19} {'pruned':>6} {'epochs':>7} {'ratio':>6} {'s':>7} {'best':>7} {'epochs to best':>15}")
    for name, result in results.items():
        rows = result["rows"]
        epochs = sum(e for _, e, _, _ in rows)
        pruned = sum(state == "PRUNED" for *_, state in rows)
        top = max(v for _, _, v, _ in rows)
        reach = epochs_to_reach(rows, best) or "not reached"
        print(
            f"{name:<19} {pruned:>6} {epochs:>7} {epochs / base_epochs:>6.2f} {result['seconds']:>7.1f} "
            f"{top:>7.4f} {reach:>15}"
        )
    print(
        "ratio: the study's epochs over the unpruned study's; epochs to best: epochs trained (trials in "
        "order) until a trial's val/acc came within 0.5 points of the unpruned study's best"
    )


if __name__ == "__main__":
    main()
