"""Transfer learning on digits through the command line (experiment=digits_transfer): pre-train the tiny
ViT on digits 0-4 and export it with save_pretrained, fine-tune that folder on digits 5-9 with 20
labelled images per class, and train the same network from scratch on the same images (each run 8
epochs, batches of 10); prints the test accuracies (on all test images of the run's digits).

    python -m tests.benchmarks.bench_transfer [override ...]     (e.g. seed=1 trainer.max_epochs=20)
"""

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

# a tiny model runs faster on one thread than fighting other processes for a few shared cores
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def transfer(root: Path, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Test accuracy of each step: pretrain (digits 0-4), finetune and scratch (digits 5-9, few labels)."""
    exported = root / "pretrained"
    steps = {
        "pretrain": ["data.classes=[0,1,2,3,4]", "data.per_class=null", f"model.export_dir={exported}"],
        "finetune": [f"model.backbone.pretrained_model_name_or_path={exported}", "model.export_dir=null"],
        "scratch": ["model.export_dir=null"],
    }
    accuracy = {}
    for step, extra in steps.items():
        args = [*QUIET, "experiment=digits_transfer", *overrides, *extra]
        check_ok(run_cli("litforge.train", args, root / step, env=ONE_THREAD))
        (run,) = run_dirs(root / step)
        accuracy[step] = json.loads((run / "metrics.json").read_text())["test/acc"]
    return accuracy


def main() -> None:
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory() as root:
        accuracy = transfer(Path(root), overrides)
    print(f"experiment=digits_transfer {' '.join(overrides)}".rstrip())
    print(f"{'step':<44} {'test/acc':>8}")
    print(f"{'pre-trained on digits 0-4 (all labels)':<44} {accuracy['pretrain']:>8.3f}")
    print(f"{'fine-tuned on digits 5-9, 20 labels/class':<44} {accuracy['finetune']:>8.3f}")
    print(f"{'from scratch on digits 5-9, 20 labels/class':<44} {accuracy['scratch']:>8.3f}")


if __name__ == "__main__":
    main()
