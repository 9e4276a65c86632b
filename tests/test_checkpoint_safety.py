"""A checkpoint made only of strings and dicts must not run code: eval and train refuse any
`_target_` that is not litforge's own (or a torch optimiser) before importing or calling it."""

import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

TASK = "litforge.tasks.image_classification.ImageClassificationModule"
DATA = {"_target_": "litforge.data.image.classification.ImageDataModule", "source": "digits"}


def hostile_checkpoint(path: Path, marker: Path, where: str) -> Path:
    """A weights-only loadable file whose rebuilt parts would run `touch <marker>` if obeyed."""
    popen = {"_target_": "subprocess.Popen", "args": f"touch {marker}", "shell": True}
    model: dict = {"_target_": TASK}
    hyper: dict = {"net": {"_target_": "litforge.nets.CNN"}, "optimizer": {"_target_": "torch.optim.Adam"}}
    data = dict(DATA)
    if where == "task":
        model, hyper = {"_target_": "subprocess.Popen"}, {"args": f"touch {marker}", "shell": True}
    elif where == "net":
        hyper["net"] = popen
    elif where == "optimizer":
        hyper["optimizer"] = {**popen, "_partial_": True}
    elif where == "data":
        data = popen
    torch.save(
        {"litforge": {"config": {"model": model, "data": data}}, "hyper_parameters": hyper, "state_dict": {}}, path
    )
    return path


@pytest.mark.parametrize("where", ["task", "net", "optimizer", "data"])
def test_eval_refuses_a_checkpoint_that_names_foreign_code(where: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    checkpoint = hostile_checkpoint(tmp_path / "evil.ckpt", marker, where)
    # testing and predicting both rebuild the task from the checkpoint
    for extra in ([], ['predict.texts=["hello"]'])[: 2 if where == "task" else 1]:
        proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={checkpoint}", *extra], tmp_path / "logs")
        assert proc.returncode == 2, proc.stderr
        assert "not one of litforge's own classes" in proc.stderr and "subprocess.Popen" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not run_dirs(tmp_path / "logs", "eval")


@pytest.mark.parametrize(
    "target",
    ["litforge.tasks.regression.torch.hub.load", "torch.optim.optimizer.torch.hub.load", "litforge.nets.os.system"],
)
def test_a_name_under_litforge_that_reaches_through_an_import_is_refused(target: str, tmp_path: Path) -> None:
    from litforge.utils.checkpoint import check_checkpoint_targets
    from litforge.utils.errors import UserError

    checkpoint = {
        "litforge": {"config": {"model": {"_target_": TASK}, "data": DATA}},
        "hyper_parameters": {"net": {"_target_": target}, "optimizer": {"_target_": "torch.optim.Adam"}},
    }
    with pytest.raises(UserError, match="not one of litforge's own classes"):
        check_checkpoint_targets(checkpoint, tmp_path / "x.ckpt")
    checkpoint["hyper_parameters"]["net"] = {"_target_": "litforge.nets.cnn.CNN"}
    check_checkpoint_targets(checkpoint, tmp_path / "x.ckpt")


def test_train_refuses_to_continue_from_such_a_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    checkpoint = hostile_checkpoint(tmp_path / "evil.ckpt", marker, "net")
    proc = run_cli("litforge.train", [*QUIET, f"ckpt_path={checkpoint}"], tmp_path / "logs")
    assert proc.returncode == 2 and "hyper_parameters.net._target_ is 'subprocess.Popen'" in proc.stderr
    assert not marker.exists() and not run_dirs(tmp_path / "logs")


@pytest.mark.parametrize("content", [b"", b"\x00" * 16])
def test_an_empty_or_garbage_checkpoint_is_named_not_a_traceback(content: bytes, tmp_path: Path) -> None:
    checkpoint = tmp_path / "broken.ckpt"
    checkpoint.write_bytes(content)
    proc = run_cli("litforge.eval", [*QUIET, f"ckpt_path={checkpoint}"], tmp_path / "logs")
    assert proc.returncode == 2 and "not a readable checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert ("empty file" in proc.stderr) == (content == b"")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = tmp_path_factory.mktemp("logs")
    check_ok(run_cli("litforge.train", [*QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=2"], logs))
    (run,) = run_dirs(logs)
    return run


@pytest.mark.parametrize("record", ["hydra.yaml", "config.yaml"])
def test_resume_refuses_a_run_record_that_names_foreign_code(record: str, finished_run: Path, tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(finished_run, run)
    path = run / ".hydra" / record
    saved = OmegaConf.load(path)
    if record == "hydra.yaml":
        # a Hydra callback would be built by Hydra itself, before litforge's checks run
        saved.hydra.overrides.task.append(f"+hydra.callbacks.evil={{_target_: os.system, command: 'touch {marker}'}}")
    else:
        saved.model.net = {"_target_": "subprocess.Popen", "args": f"touch {marker}", "shell": True}
    OmegaConf.save(saved, path)
    before = path.read_bytes()
    proc = run_cli("litforge.train", [*QUIET, f"resume={run}"], tmp_path / "logs")
    assert proc.returncode == 2, proc.stderr
    assert "not a class of litforge, Lightning or torch.optim" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and path.read_bytes() == before
