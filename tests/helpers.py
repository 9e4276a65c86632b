"""Run litforge's entry points the way users do: composed configs and real subprocesses."""

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from litforge.utils.config import CONFIG_DIR

# quiet, fast runs that write under the test's own folder
QUIET = ["extras=quiet", "~callbacks.rich_progress_bar"]
# a one-layer BERT for the text tasks' tests, smaller than model/backbone=tiny_bert
TINY_BACKBONE = [
    "model.backbone.config.hidden_size=32",
    "model.backbone.config.num_hidden_layers=1",
    "model.backbone.config.intermediate_size=64",
    "model.backbone.config.max_position_embeddings=32",
]


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", log_dir: Path | None = None
) -> DictConfig:
    """The config Hydra would compose for these overrides, with `paths.output_dir` set."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=False)
    if log_dir is not None:
        with open_dict(cfg):
            cfg.paths.log_dir = str(log_dir)
            cfg.paths.output_dir = str(log_dir / "run")
        (log_dir / "run").mkdir(parents=True, exist_ok=True)
    return cfg


def run_cli(
    module: str, overrides: Sequence[str], log_dir: Path, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python -m <module> <overrides>` with runs under `log_dir`; returns the finished process.
    Past `timeout` the whole process group (DDP ranks, joblib workers) is killed and the test fails
    with the end of what the command printed."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", module, *overrides, f"paths.log_dir={log_dir}"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, start_new_session=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(
                f"{' '.join(command)} still ran after {timeout} s\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-4000:]}"
            ) from None
        finally:
            # nothing it started outlives the test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def run_dirs(log_dir: Path, task_name: str = "train") -> list[Path]:
    root = log_dir / task_name / "runs"
    return sorted(root.iterdir()) if root.is_dir() else []


def check_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    )
