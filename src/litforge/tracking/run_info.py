"""What every tracker records about a run besides its metrics: config, code state, versions, names."""

import re
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from litforge.utils.config import PROJECT_ROOT

PACKAGES = (
    "torch",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "transformers",
    "datasets",
    "tokenizers",
    "scikit-learn",
    "numpy",
    "mlflow",
    "wandb",
    "tensorboard",
    "litforge",
)
# config keys whose values are secrets (hf_token, api_key, password, ...), not tokenizer or token_column
SECRET_KEY = re.compile(r"(^|[_.])(api_?key|access_?key|token|secret|password|passwd|credentials?)$", re.IGNORECASE)
# overrides that say where a run writes or how it is watched, not what it trains
NAME_SKIPS = ("hydra", "paths", "logger", "extras", "experiment", "callbacks.rich_progress_bar")


def without_password(value: str) -> str:
    """A URL with any password in it masked; other strings as they are."""
    parts = urlsplit(value) if "://" in value else None
    if parts is None or parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The nested config as `a.b.c` keys (Hydra's override syntax), secrets masked."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, f"{name}."))
        elif SECRET_KEY.search(str(key)) and value not in (None, ""):
            flat[name] = "***"
        elif isinstance(value, str):
            flat[name] = without_password(value)
        else:
            flat[name] = value if isinstance(value, bool | int | float) or value is None else str(value)
    return flat


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The commit the code ran from and whether the work tree had changes; empty outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("--no-optional-locks", "status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": commit, "git.dirty": dirty}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"versions.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def parameter_counts(model: Any) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "params.total": sum(p.numel() for p in params),
        "params.trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def hydra_job() -> Any:
    """The running Hydra job's config (`hydra.*`), or None outside a Hydra app (tests composing configs)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_dir() -> str | None:
    """The absolute sweep directory when this job is part of a multirun, else None."""
    from hydra.types import RunMode

    job = hydra_job()
    if job is None or job.mode != RunMode.MULTIRUN:
        return None
    return str(Path(job.sweep.dir).resolve())


def task_name(hydra: Any = None) -> str:
    """The task: the model config chosen (image_classifier, regressor, ...), else the entry point.

    `hydra` is the `hydra` config node where no job is running yet (a sweep's start)."""
    hydra = hydra or hydra_job()
    if hydra is None:
        return "litforge"
    return hydra.runtime.choices.get("model") or hydra.job.name


def default_run_name() -> str | None:
    """The experiment config chosen followed by the overrides that change what is trained."""
    job = hydra_job()
    if job is None:
        return None
    overrides = [o for o in job.overrides.task if not o.lstrip("+~").startswith(NAME_SKIPS)]
    return " ".join([job.runtime.choices.get("experiment") or task_name(), *map(without_password, overrides)])
