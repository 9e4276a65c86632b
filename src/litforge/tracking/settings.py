"""Where each tracker writes, from config and environment, checked without importing the trackers."""

import importlib.util
import netrc
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig

from litforge.tracking.run_info import SECRET_KEY, without_password
from litforge.utils.errors import UserError

LOCAL_DB = "mlflow.db"
WANDB_MODES = ("online", "offline", "disabled", "shared")
# the package each logger needs, by a word in its `_target_`
PACKAGES = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboard"}


def resolve_tracking_uri(configured: str | None, store_dir: str) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else the SQLite database in `store_dir`."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{Path(store_dir).resolve() / LOCAL_DB}"


def local_artifact_location(uri: str, store_dir: str) -> str | None:
    """The artifact folder beside a SQLite store (made here), else None: the server decides.

    Without it, runs in a SQLite store put their artifacts in ./mlruns of whatever the cwd is."""
    if not uri.startswith("sqlite:"):
        return None
    Path(store_dir).mkdir(parents=True, exist_ok=True)
    return (Path(store_dir).resolve() / "artifacts").as_uri()


def check_tracking_uri(configured: str | None) -> None:
    """Refuse a URI with a password in it, or a server that does not answer, in a few seconds."""
    key, where = ("logger.mlflow.tracking_uri", "") if configured else ("MLFLOW_TRACKING_URI", " (environment)")
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri or not uri.startswith(("http://", "https://")):
        return
    if configured and urlsplit(uri).password:
        raise UserError(
            f"{key}={without_password(uri)} carries a password, which would be saved with the run's "
            "config. Give the URI without it and set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD "
            "in the environment."
        )
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
    except urllib.error.HTTPError:
        return  # it answered: a server is there (auth or a proxy may refuse /health)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"{key}={without_password(uri)}{where}: no MLflow tracking server answers there ({reason}). "
            "Start it (e.g. `mlflow server --host 127.0.0.1 --port 5000`), correct the URI, or unset "
            "it to log to the local store under logs/mlflow/."
        ) from err


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it); never read out."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(configured: str | None) -> str:
    """The config's mode, else $WANDB_MODE, else online for a logged-in user and offline otherwise."""
    mode = configured or os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    if mode not in WANDB_MODES:
        key, where = ("logger.wandb.mode", "") if configured else ("WANDB_MODE", " (environment)")
        raise UserError(f"{key}={mode}{where}: give one of {', '.join(WANDB_MODES)}.")
    if mode in ("online", "shared") and not wandb_logged_in():
        raise UserError(
            f"W&B mode {mode} needs an API key: run `wandb login` (or set WANDB_API_KEY in the environment), "
            "or leave WANDB_MODE unset to log offline to logs/wandb/."
        )
    return mode


def _secret_keys(cfg: Any, prefix: str) -> list[str]:
    if not isinstance(cfg, DictConfig):
        return []
    found = []
    for key, value in cfg.items_ex(resolve=False):
        name = f"{prefix}.{key}"
        if isinstance(value, DictConfig):
            found += _secret_keys(value, name)
        elif SECRET_KEY.search(str(key)) and value not in (None, ""):
            found.append(name)
    return found


def check_trackers(logger_cfg: DictConfig | None) -> None:
    """Fail before training, not after it: missing packages, secrets in the config, unreachable servers."""
    for name, entry in (logger_cfg or {}).items():
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            continue
        secrets = _secret_keys(entry, f"logger.{name}")
        if secrets:
            raise UserError(
                f"{secrets[0]}: keys and passwords never go into a config (it is saved with every run). "
                "Remove it and give it through the tracker's environment variable or login command."
            )
        target = entry._target_.lower()
        for word, package in PACKAGES.items():
            if word in target and importlib.util.find_spec(package) is None:
                raise UserError(
                    f"logger.{name} ({entry._target_}) needs the `{package}` package: "
                    "pip install -e '.[tracking]' (or pick another logger)."
                )
        if "mlflow" in target:
            check_tracking_uri(entry.get("tracking_uri"))
        if "wandb" in target:
            wandb_mode(entry.get("mode"))
