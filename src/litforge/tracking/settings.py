"""Where each tracker writes, from config and environment, checked without importing the trackers."""

import importlib.util
import netrc
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
# MLflow's own defaults (120 s a request, 7 retries with backoff) stall a run for minutes per
# write when its server is gone; these give up in seconds and the writes wait in memory instead
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": 15, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 2}
# MLflow refuses more retries than this
MAX_HTTP_RETRIES = 10
# how long a run waits for another process that is creating the local store
STORE_LOCK_TIMEOUT_S = 300


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


@contextmanager
def local_store_lock(uri: str) -> Iterator[None]:
    """Held while a process opens a SQLite store: the first one creates its tables with alembic
    migrations, and two doing that at once leave a store that no later run can open."""
    path = uri.removeprefix("sqlite:///").partition("?")[0] if uri.startswith("sqlite:///") else ""
    if not path:
        yield
        return
    from filelock import FileLock, Timeout

    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(lock, timeout=STORE_LOCK_TIMEOUT_S):
            yield
    except Timeout as err:
        raise UserError(
            f"the MLflow store {path} stayed locked for {STORE_LOCK_TIMEOUT_S} s by another process "
            f"({lock}). If no other run is starting, remove that file."
        ) from err


def apply_http_settings(timeout: int | None, retries: int | None) -> None:
    """logger.mlflow.http_timeout / http_retries into MLflow's environment variables; where the
    config leaves them null, a value already in the environment stands, else litforge's short one."""
    for name, value in (("MLFLOW_HTTP_REQUEST_TIMEOUT", timeout), ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries)):
        if value is not None:
            os.environ[name] = str(value)
        else:
            os.environ.setdefault(name, str(HTTP_DEFAULTS[name]))


def check_http_settings(entry: Any, name: str) -> None:
    """logger.<name>.http_timeout, http_retries and retry_every: whole seconds / counts MLflow accepts."""
    limits = {"http_timeout": (1, None), "http_retries": (0, MAX_HTTP_RETRIES), "retry_every": (1, None)}
    for key, (low, high) in limits.items():
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            valid = f"a whole number from {low} to {high}" if high else f"a whole number of at least {low}"
            raise UserError(f"logger.{name}.{key}={value!r}: give {valid}, or null for the default.")


# the schemes MLflow has a tracking store for (a SQLAlchemy URI may add "+driver"); no scheme is
# a local folder. tests/test_bad_values.py compares them with the installed MLflow's
TRACKING_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")
TRACKING_SCHEMES += ("databricks-uc", "uc")


def check_tracking_uri(configured: str | None) -> None:
    """Refuse a URI MLflow has no store for, one with a password in it, or a server that does not
    answer, in a few seconds."""
    key, where = ("logger.mlflow.tracking_uri", "") if configured else ("MLFLOW_TRACKING_URI", " (environment)")
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return
    parts = urlsplit(uri)
    scheme = parts.scheme.partition("+")[0].lower()
    # a one-letter scheme is a Windows drive: a local folder
    if len(scheme) > 1 and scheme not in TRACKING_SCHEMES:
        raise UserError(
            f"{key}={without_password(uri)}{where}: MLflow has no tracking store for the scheme '{parts.scheme}'. "
            f"Give a URI with one of {', '.join(TRACKING_SCHEMES)} (e.g. http://127.0.0.1:5000 for a server, "
            "sqlite:///path/mlflow.db), a local folder, or unset it to log to the local store under logs/mlflow/."
        )
    if parts.password:
        saved = "saved with the run's config" if configured else "written to the run's log in plain text"
        raise UserError(
            f"{key}={without_password(uri)}{where} carries a password, which would be {saved}. "
            "Give the URI without it and set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD "
            "in the environment."
        )
    if scheme not in ("http", "https"):
        return
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


def check_trackers(logger_cfg: Any) -> None:
    """Fail before training, not after it: missing packages, secrets in the config, unreachable servers."""
    if logger_cfg is not None and not isinstance(logger_cfg, DictConfig):
        from litforge.utils.config import CONFIG_DIR

        options = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "logger").glob("*.yaml")))
        raise UserError(
            f"logger is {logger_cfg!r}, not a mapping of logger names to their configs "
            f"(logger.csv._target_=..., ...). Choose loggers with logger=<option> ({options}), "
            "or set logger=null for none."
        )
    for name, entry in (logger_cfg or {}).items():
        if entry is not None and not isinstance(entry, DictConfig):
            raise UserError(
                f"logger.{name} is {entry!r}, not a logger config (a mapping with a _target_). "
                f"Give its keys (logger.{name}.<key>=...), remove it with ~logger.{name}, or choose "
                "loggers with logger=<option> (conf/logger/)."
            )
        if entry is None or "_target_" not in entry:
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
            check_http_settings(entry, name)
            check_tracking_uri(entry.get("tracking_uri"))
        if "wandb" in target:
            wandb_mode(entry.get("mode"))
