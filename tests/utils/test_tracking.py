"""Trackers as users run them: a real MLflow server over HTTP, the local SQLite store, W&B offline
files, TensorBoard events, a sweep's parent and child runs, and the sweep notebook."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from litforge.tracking import check_trackers
from litforge.tracking.run_info import flat_params
from litforge.utils.config import PROJECT_ROOT
from litforge.utils.errors import UserError
from tests.helpers import QUIET, check_ok, compose_config, run_cli, run_dirs

TINY = [
    *QUIET,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
]
# looks like a W&B key; no file the runs write may contain it
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _offline_env(home: Path) -> dict[str, str]:
    """W&B offline with its caches in the test's folder; no tracking server from the environment."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_API_KEY": FAKE_KEY,
        "WANDB_CACHE_DIR": str(home / "wandb-cache"),
        "WANDB_DATA_DIR": str(home / "wandb-data"),
        "WANDB_CONFIG_DIR": str(home / "wandb-config"),
        "MLFLOW_TRACKING_URI": "",
    }


@pytest.fixture(scope="module")
def booting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """A real `mlflow server` on a free local port, started without waiting for it (it boots in
    ~15 s while the sweep trains) and stopped after the module's tests."""
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "server-artifacts"),
    ]  # fmt: skip
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
        try:
            yield server, f"http://127.0.0.1:{port}", folder / "server.log"
        finally:
            # a throwaway server: its group is killed at once instead of waiting out a graceful stop
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def mlflow_server(booting_server: tuple[subprocess.Popen, str, Path]) -> str:
    """The server's URI once it answers."""
    server, uri, log = booting_server
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1).close()
            return uri
        except OSError:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.3)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, booting_server: tuple) -> Path:
    """A 2-job multirun with every tracker at once; returns its log dir. (It asks for the MLflow
    server only so that the server boots meanwhile.)"""
    log_dir = tmp_path_factory.mktemp("sweep")
    overrides = [
        "-m", *TINY, "model.optimizer.lr=0.001,0.003", "logger=many",
        "logger.mlflow.registered_model_name=digits", "logger.wandb.log_best_checkpoint=true",
    ]  # fmt: skip
    check_ok(run_cli("litforge.train", overrides, log_dir, env=_offline_env(log_dir)))
    return log_dir


def _jobs(log_dir: Path) -> list[Path]:
    (sweep_dir,) = (log_dir / "train" / "multiruns").iterdir()
    return sorted(p for p in sweep_dir.iterdir() if (p / "metrics.json").is_file())


def test_sweep_jobs_are_child_runs_of_one_parent_in_the_local_store(sweep: Path) -> None:
    from mlflow.tracking import MlflowClient

    assert (sweep / "mlflow" / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{sweep / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image_classifier")
    assert experiment.artifact_location == (sweep / "mlflow" / "artifacts").resolve().as_uri()
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("litforge.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    assert parent.data.params["sweep.model.optimizer.lr"] == "0.001,0.003"
    assert parent.data.params["optimized_metric"] == "val/acc"

    jobs = _jobs(sweep)
    best = max(json.loads((job / "metrics.json").read_text())["val/acc"] for job in jobs)
    assert parent.data.metrics["val/acc"] == pytest.approx(best)
    best_child = client.get_run(parent.data.tags["best_run_id"])
    assert best_child.data.metrics["best/val/acc"] == pytest.approx(best)
    assert parent.info.status == "FINISHED"
    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"multirun.yaml", "trials.csv"} <= parent_files

    for child in children:
        files = {f.path for f in client.list_artifacts(child.info.run_id, "checkpoints")}
        assert len(files) == 1 and files.pop().startswith("checkpoints/best_epoch_")
    versions = client.search_model_versions("name='digits'")
    assert sorted(v.run_id for v in versions) == sorted(c.info.run_id for c in children)


def test_wandb_offline_runs_are_grouped_by_the_sweep(sweep: Path) -> None:
    runs = sorted((sweep / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    sweep_name = _jobs(sweep)[0].parent.name
    for run in runs:
        (records,) = run.glob("run-*.wandb")
        data = records.read_bytes()
        for expected in ["model.optimizer.lr", "versions.torch", "test/acc", "best/val/acc", sweep_name, "digits"]:
            assert expected.encode() in data, expected
        assert (run / "files" / ".hydra" / "config.yaml").is_file()
        assert list((run / "files" / "media" / "images").rglob("confusion_matrix*.png"))


def test_tensorboard_and_csv_hold_the_run_info(sweep: Path) -> None:
    job = _jobs(sweep)[0]
    for hparams in [job / "tensorboard" / "hparams.yaml", job / "csv" / "hparams.yaml"]:
        text = hparams.read_text()
        assert "model.optimizer.lr: 0.001" in text and "versions.torch" in text and "git.commit" in text
    events = b"".join(p.read_bytes() for p in (job / "tensorboard").glob("events.out.tfevents.*"))
    for tag in [b"plots/confusion_matrix", b"config/config.yaml", b"val/acc", b"lr-Adam/pg1"]:
        assert tag in events, tag


def test_no_key_is_written_anywhere(sweep: Path) -> None:
    leaks = [p for p in sweep.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert not leaks


def test_sweep_notebook_plots_curves_and_hparams(sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebooks = PROJECT_ROOT / "notebooks"
    monkeypatch.setenv("LITFORGE_MLFLOW_URI", f"sqlite:///{sweep / 'mlflow' / 'mlflow.db'}")
    monkeypatch.setenv("LITFORGE_FIGURE_DIR", str(tmp_path))
    notebook = nbformat.read(notebooks / "sweep_results.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(notebooks)}}).execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "2 runs, best val/acc" in printed
    assert (tmp_path / "validation_curves.png").is_file() and (tmp_path / "hparams_vs_metric.png").is_file()


def test_run_against_a_real_mlflow_server(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    overrides = [*TINY, "logger=mlflow", f"logger.mlflow.tracking_uri={mlflow_server}", "tags=[server,test]"]
    check_ok(run_cli("litforge.train", overrides, tmp_path, env=_offline_env(tmp_path)))

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("image_classifier")
    (run,) = client.search_runs([experiment.experiment_id])
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("image_classifier ")
    assert params["model.optimizer.lr"] == "0.001"
    assert int(params["params.total"]) > 0 and params["versions.torch"] and params["precision"] == "32-true"
    assert tags["server"] == "true" and tags["git.commit"] == params["git.commit"]
    assert {"train/loss_step", "val/acc", "test/acc", "best/val/acc"} <= set(metrics)
    assert any(name.startswith("lr-Adam") for name in metrics)
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
    (run_dir,) = run_dirs(tmp_path)
    assert tags["litforge.run_dir"] == str(run_dir.resolve())

    artifacts = {f.path for folder in ("hydra", "plots") for f in client.list_artifacts(run.info.run_id, folder)}
    assert {"hydra/config.yaml", "hydra/overrides.yaml", "plots/confusion_matrix.png"} <= artifacts
    config = Path(client.download_artifacts(run.info.run_id, "hydra/config.yaml", str(tmp_path)))
    assert "lr: 0.001" in config.read_text()
    assert not (tmp_path / "mlflow").exists(), "a run sent to a server also wrote the local store"


def test_unreachable_tracking_server_is_refused_before_training(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    proc = run_cli("litforge.train", [*QUIET, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}"], tmp_path)
    assert proc.returncode == 2
    assert f"logger.mlflow.tracking_uri={uri}: no MLflow tracking server answers there" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 30
    assert not run_dirs(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        (["logger=mlflow", "logger.mlflow.tracking_uri=http://me:pw@127.0.0.1:1"], {}, "http://me:***@127.0.0.1:1"),
        (["logger=wandb", "+logger.wandb.api_key=abc"], {}, "logger.wandb.api_key: keys and passwords never"),
        (["logger=many"], {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, "MLFLOW_TRACKING_URI=http://127.0.0.1:1"),
        (["logger=wandb"], {"WANDB_MODE": "online"}, "W&B mode online needs an API key"),
        (["logger=wandb"], {"WANDB_MODE": "sometimes"}, "WANDB_MODE=sometimes"),
    ],
)
def test_tracker_settings_are_checked(
    overrides: list[str], env: dict[str, str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = compose_config(overrides, log_dir=tmp_path)
    with pytest.raises(UserError) as err:
        check_trackers(cfg.logger)
    assert message in str(err.value)
    assert "pw" not in str(err.value)


def test_flat_params_use_override_keys_and_mask_secrets() -> None:
    config = {
        "model": {"optimizer": {"lr": 0.1}, "tokenizer": "bert"},
        "tags": ["a"],
        "db": {"password": "pw", "hf_token": "hf_x", "uri": "http://u:pw@h"},
    }
    assert flat_params(config) == {
        "model.optimizer.lr": 0.1,
        "model.tokenizer": "bert",
        "tags": "['a']",
        "db.password": "***",
        "db.hf_token": "***",
        "db.uri": "http://u:***@h",
    }


def test_resume_continues_the_same_mlflow_and_wandb_runs(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    env = _offline_env(tmp_path)
    overrides = [*TINY, "logger=many", "test=false"]
    check_ok(run_cli("litforge.train", overrides, tmp_path, env=env))
    (run,) = run_dirs(tmp_path)
    ids = json.loads((run / "tracker_runs.json").read_text())
    check_ok(run_cli("litforge.train", [f"resume={run}", "trainer.max_epochs=3"], tmp_path, env=env))

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("image_classifier")
    (only,) = client.search_runs([experiment.experiment_id])
    assert only.info.run_id == ids["mlflow"]
    assert "trainer.max_epochs=3" in only.data.tags["litforge.resumed_with"]
    epochs = [int(m.value) for m in client.get_metric_history(only.info.run_id, "epoch")]
    assert sorted(set(epochs)) == [0, 1, 2], "the resumed epoch logs into the first run"
    wandb_runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and all(p.name.endswith(ids["wandb"]) for p in wandb_runs)
