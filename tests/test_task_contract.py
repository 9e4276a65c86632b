"""A sixth task written only from the task contract (tests/contract_task/, README "Add your own task /
data / model"): trained, checkpointed, evaluated, predicted from and swept through litforge's
command lines, its configs found with hydra.searchpath and its checkpoint read with trusted_modules."""

import json
import random
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from litforge.utils.checkpoint import load_checkpoint, trusted_prefixes
from litforge.utils.checks import check_values
from litforge.utils.errors import UserError
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

PACKAGE = Path(__file__).parent / "contract_task"
# the folder above tests/, so that `tests.contract_task` imports in the subprocesses
ENV = {"PYTHONPATH": str(Path(__file__).parent.parent)}
LENGTH = 4


def digits_csv(path: Path, rows: int, seed: int, labelled: bool = True) -> Path:
    rng = random.Random(seed)
    lines = ["digits,total" if labelled else "digits"]
    for _ in range(rows):
        digits = [rng.randrange(10) for _ in range(LENGTH)]
        lines.append(" ".join(map(str, digits)) + (f",{sum(digits)}" if labelled else ""))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_overrides(data: Path) -> list[str]:
    return [
        *QUIET,
        f"hydra.searchpath=[file://{PACKAGE / 'conf'}]",
        "data=digit_sums",
        "model=digit_sum",
        f"data.path={data}",
        "model.optimizer.lr=0.05",
        "trainer.max_epochs=2",
        "callbacks.model_summary=null",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A training run of the toy task: its log dir and its best checkpoint."""
    log_dir = tmp_path_factory.mktemp("contract")
    proc = run_cli("litforge.train", train_overrides(digits_csv(log_dir / "sums.csv", 160, 0)), log_dir, env=ENV)
    check_ok(proc)
    (run,) = run_dirs(log_dir)
    (best,) = (run / "checkpoints").glob("best_epoch_*.ckpt")
    return log_dir, best


def test_the_toy_task_trains_and_writes_its_monitored_metric_a_checkpoint_and_a_figure(
    trained: tuple[Path, Path],
) -> None:
    log_dir, best = trained
    (run,) = run_dirs(log_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/mae", "test/mae", "test/loss"} <= set(metrics)
    assert (run / "checkpoints" / "last.ckpt").is_file() and best.is_file()
    assert (run / "plots" / "predicted_vs_sum.png").is_file()


def test_eval_and_predict_rebuild_the_toy_task_from_its_checkpoint_with_trusted_modules(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, best = trained
    trust = "trusted_modules=[tests.contract_task]"
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}", trust], tmp_path, env=ENV)
    check_ok(proc)
    (run,) = run_dirs(tmp_path, "eval")
    assert {"test/loss", "test/mae"} <= set(json.loads((run / "metrics.json").read_text()))

    inputs = digits_csv(tmp_path / "new.csv", 7, 1, labelled=False)
    overrides = ["extras=quiet", f"ckpt_path={best}", f"input={inputs}", trust]
    proc = run_cli("litforge.predict", overrides, tmp_path, env=ENV)
    check_ok(proc)
    (run,) = run_dirs(tmp_path, "predict")
    predictions = pd.read_csv(run / "predictions.csv")
    assert predictions["id"].tolist() == list(range(7))
    assert predictions["prediction"].notna().all()


def test_training_continues_from_a_checkpoint_of_the_toy_task_with_trusted_modules(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    log_dir, best = trained
    continued = [*train_overrides(log_dir / "sums.csv"), f"ckpt_path={best}", "trainer.max_epochs=3"]
    proc = run_cli("litforge.train", continued, tmp_path, env=ENV)
    assert proc.returncode == 2 and "trusted_modules=[tests.contract_task.task" in proc.stderr, proc.stderr
    check_ok(run_cli("litforge.train", [*continued, "trusted_modules=[tests.contract_task]"], tmp_path, env=ENV))
    (run,) = run_dirs(tmp_path)
    assert json.loads((run / "metrics.json").read_text())["last/epoch"] == 2


def test_a_run_of_the_toy_task_resumes_with_trusted_modules_on_the_resume_command_line(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    log_dir, _ = trained
    (run,) = run_dirs(log_dir)
    copy = shutil.copytree(run, tmp_path / "run")
    proc = run_cli("litforge.train", [f"resume={copy}", "trainer.max_epochs=3"], tmp_path, env=ENV)
    assert proc.returncode == 2 and "trusted_modules=[" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    resumed = [f"resume={copy}", "trainer.max_epochs=3", "trusted_modules=[tests.contract_task]"]
    check_ok(run_cli("litforge.train", resumed, tmp_path, env=ENV))
    assert json.loads((copy / "metrics.json").read_text())["last/epoch"] == 2


def test_a_grid_sweep_over_a_hyperparameter_of_the_toy_task_completes_each_trial(tmp_path: Path) -> None:
    data = digits_csv(tmp_path / "sums.csv", 80, 0)
    overrides = ["-m", *train_overrides(data), "trainer.max_epochs=1", "model.hidden_size=4,8"]
    proc = run_cli("litforge.train", overrides, tmp_path, env=ENV)
    check_ok(proc)
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    trials = pd.read_csv(sweep / "trials.csv")
    assert trials["status"].tolist() == ["COMPLETED", "COMPLETED"]
    assert trials["value"].notna().all()


def test_a_checkpoint_of_a_task_outside_litforge_is_refused_without_trusted_modules(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, best = trained
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}"], tmp_path, env=ENV)
    assert proc.returncode == 2, proc.stderr
    assert "'tests.contract_task.task.DigitSumTask', which is not one of litforge's own classes" in proc.stderr
    assert "trusted_modules=[tests.contract_task.task" in proc.stderr and "Traceback" not in proc.stderr


def test_trusted_modules_os_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, best = trained
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={best}", "trusted_modules=[os]"], tmp_path, env=ENV)
    assert proc.returncode == 2, proc.stderr
    assert "trusted_modules=[os]: 'os' is part of Python's standard library" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("module", ["subprocess", "builtins", "os.path", "torch", "torch.hub", "litforge", ""])
def test_trusted_modules_refuses_the_standard_library_and_whole_libraries(module: str) -> None:
    with pytest.raises(UserError, match=rf"trusted_modules=\[{re.escape(module)}\]: '{re.escape(module)}' "):
        trusted_prefixes([module])


def test_trusted_modules_takes_packages_of_ones_own_and_litforges_task_modules() -> None:
    assert trusted_prefixes(["tests.contract_task", "mylab"]) == ("tests.contract_task", "mylab")
    assert trusted_prefixes("mylab.tasks") == ("mylab.tasks",)
    assert trusted_prefixes(["litforge.tasks.my_task"]) == ("litforge.tasks.my_task",)


def test_a_trusted_module_may_not_hand_on_what_it_imported(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    _, best = trained
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["optimizer"]["_target_"] = "tests.contract_task.data.random_split"
    forged = tmp_path / "forged.ckpt"
    torch.save(checkpoint, forged)
    message = r"'tests.contract_task.data.random_split', under trusted_modules, .* comes from torch.utils.data"
    with pytest.raises(UserError, match=message):
        load_checkpoint(forged, ["tests.contract_task"])


def test_trusted_modules_written_into_a_checkpoint_are_not_read(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    _, best = trained
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    checkpoint["litforge"]["config"]["trusted_modules"] = ["tests.contract_task"]
    forged = tmp_path / "forged.ckpt"
    torch.save(checkpoint, forged)
    with pytest.raises(UserError, match="not one of litforge's own classes"):
        load_checkpoint(forged)


def test_model_monitor_of_a_task_outside_litforge_is_checked_against_its_metric_names(tmp_path: Path) -> None:
    cfg = compose_config([*train_overrides(tmp_path / "sums.csv"), "model.monitor=val/acc"])
    with pytest.raises(UserError, match=r"model.monitor=val/acc: DigitSumTask logs no such metric.*val/loss, val/mae"):
        check_values(cfg)
    check_values(compose_config(train_overrides(tmp_path / "sums.csv")))
