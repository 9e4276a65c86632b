"""`pip install` of litforge, not the clone: its configs travel with it and its runs land in the user's folder."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import QUIET, check_ok

REPO = Path(__file__).resolve().parents[1]


def run_in(cwd: Path, command: list[str], pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        # ahead of site-packages, so the installed copy wins over the clone's editable install
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """litforge installed from its sdist (what an index serves) into a folder of its own.

    The clone is copied first: building writes egg-info and build/ into the tree it builds.
    """
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = f"from setuptools import build_meta; print(build_meta.build_sdist({str(work)!r}))"
    proc = run_in(source, [sys.executable, "-c", build])
    check_ok(proc)
    sdist = work / proc.stdout.strip().splitlines()[-1]
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    check_ok(run_in(work, [*install, "--no-cache-dir", "--target", str(work / "target"), str(sdist)]))
    return work / "target"


def relative_files(root: Path, pattern: str) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob(pattern) if "__pycache__" not in p.parts}


def test_installed_package_carries_every_config_and_module(target: Path) -> None:
    configs = {path for path in relative_files(REPO / "conf", "*.yaml") if not path.startswith("local/")}
    assert configs and relative_files(target / "litforge" / "conf", "*.yaml") == configs
    modules = {path for path in relative_files(REPO / "src", "*.py") if ".egg-info" not in path}
    installed = {f"{top}/{p}" for top in ("litforge", "hydra_plugins") for p in relative_files(target / top, "*.py")}
    assert installed == modules, f"not installed (list them in pyproject.toml packages): {sorted(modules - installed)}"


def test_installed_entry_points_train_from_another_directory(target: Path, tmp_path: Path) -> None:
    where = "import litforge, hydra_plugins.litforge_optuna_sweeper as s; print(litforge.__file__, s.__file__)"
    proc = run_in(tmp_path, [sys.executable, "-c", where], pythonpath=target)
    check_ok(proc)
    assert all(Path(f).is_relative_to(target) for f in proc.stdout.split()), proc.stdout

    for script in ("litforge-train", "litforge-eval", "litforge-predict"):
        proc = run_in(tmp_path, [str(target / "bin" / script), "--help"], pythonpath=target)
        check_ok(proc)
        assert "== Configuration groups ==" in proc.stdout and "data: " in proc.stdout

    check_ok(run_in(tmp_path, [str(target / "bin" / "litforge-train"), "debug=fdr", *QUIET], pythonpath=target))
    (run,) = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    assert "test/acc" in json.loads((run / "metrics.json").read_text())
    sources = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["config_sources"]
    assert [s["path"] for s in sources if s["provider"] == "main"] == [str(target / "litforge" / "conf")]


def test_clone_reads_and_writes_its_own_tree(tmp_path: Path) -> None:
    proc = run_in(tmp_path, [sys.executable, "-m", "litforge.train", "--cfg", "job", "--resolve", "--package", "paths"])
    check_ok(proc)
    paths = yaml.safe_load(proc.stdout)
    assert paths["root_dir"] == str(REPO) and paths["log_dir"] == str(REPO / "logs")


def test_installed_copy_runs_an_optuna_sweep(target: Path, tmp_path: Path) -> None:
    sweep = ["-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=1", "debug=fdr", *QUIET]
    check_ok(run_in(tmp_path, [str(target / "bin" / "litforge-train"), *sweep], pythonpath=target))
    (multirun,) = sorted((tmp_path / "logs" / "train" / "multiruns").iterdir())
    (trial,) = list(csv.DictReader((multirun / "trials.csv").open()))
    assert trial["status"] == "COMPLETED" and "model.optimizer.lr=" in trial["overrides"]
    assert (multirun / "0" / "metrics.json").is_file()
