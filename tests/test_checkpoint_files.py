"""What each checkpoint file of a run holds, what reads it, and which files a sweep keeps."""

import json
from pathlib import Path

import torch

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

FAST = [
    *QUIET,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "~callbacks.save_figures",
]


def test_the_best_checkpoint_is_weights_only_and_serves_eval_and_fine_tuning(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", FAST, tmp_path / "first"))
    (run,) = run_dirs(tmp_path / "first")
    (best,) = (run / "checkpoints").glob("best_*.ckpt")
    last = run / "checkpoints" / "last.ckpt"

    weights = torch.load(best, weights_only=True)
    assert {"state_dict", "hyper_parameters", "litforge"} <= set(weights)
    assert not {"optimizer_states", "lr_schedulers", "callbacks"} & set(weights)
    assert weights["litforge"]["config"]["model"]["_target_"].endswith("ImageClassificationModule")
    full = torch.load(last, weights_only=True)
    assert {"optimizer_states", "callbacks", "loops"} <= set(full), "last.ckpt must keep what a resume needs"
    # Adam's step ran torch's fused kernel on the CPU (model.optimizer.fused=null picks it)
    assert all(group["fused"] is True for group in full["optimizer_states"][0]["param_groups"])
    # Adam keeps two moments per weight: without them the file is about a third of last.ckpt
    assert best.stat().st_size < 0.5 * last.stat().st_size, (best.stat().st_size, last.stat().st_size)

    evaluated = run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}", "trainer.limit_test_batches=2"], tmp_path)
    check_ok(evaluated)
    (eval_run,) = run_dirs(tmp_path, "eval")
    assert 0 <= json.loads((eval_run / "metrics.json").read_text())["test/acc"] <= 1

    fine_tuning = [*FAST, "trainer.max_epochs=1", f"ckpt_path={best}", "model.optimizer.fused=false"]
    tuned = run_cli("litforge.train", fine_tuning, tmp_path / "tuned")
    check_ok(tuned)
    assert "holds only weights: a new fit starts from them (fine-tuning)" in tuned.stdout + tuned.stderr
    (tuned_run,) = run_dirs(tmp_path / "tuned")
    state = torch.load(tuned_run / "checkpoints" / "last.ckpt", weights_only=True)
    # a resume would continue at epoch 2 of a 1-epoch run and train nothing; a new fit trains 1 epoch
    assert (state["epoch"], state["global_step"]) == (0, 3)
    assert all(group["fused"] is False for group in state["optimizer_states"][0]["param_groups"])


def test_fine_tuning_weights_into_another_model_names_the_mismatch(tmp_path: Path) -> None:
    check_ok(run_cli("litforge.train", [*FAST, "trainer.max_epochs=1"], tmp_path / "first"))
    (best,) = run_dirs(tmp_path / "first")[0].glob("checkpoints/best_*.ckpt")
    proc = run_cli("litforge.train", [*FAST, "model.net.hidden_size=64", f"ckpt_path={best}"], tmp_path / "other")
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert f"ckpt_path={best}: its weights do not fit this run's model" in message
    assert "Traceback" not in message


def test_a_completed_sweep_job_removes_last_ckpt_unless_told_to_keep_it(tmp_path: Path) -> None:
    overrides = ["-m", *FAST, "trainer.max_epochs=1", "callbacks.last_checkpoint.keep_when_done=true,null"]
    check_ok(run_cli("litforge.train", overrides, tmp_path))
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    kept, removed = sweep / "0" / "checkpoints", sweep / "1" / "checkpoints"
    assert sorted(p.name for p in kept.iterdir()) == ["best_epoch_000.ckpt", "last.ckpt"]
    assert sorted(p.name for p in removed.iterdir()) == ["best_epoch_000.ckpt"]
    for job in ["0", "1"]:
        assert (sweep / job / "metrics.json").is_file()
