"""MLflow: a local SQLite store by default, a server by URI, sweeps as parent and child runs."""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger

from litforge.tracking import run_ids
from litforge.tracking.outage import OutageTolerantClient, is_outage
from litforge.tracking.run_info import default_run_name, sweep_dir, task_name
from litforge.tracking.settings import (
    apply_http_settings,
    local_artifact_location,
    local_store_lock,
    resolve_tracking_uri,
)
from litforge.tracking.sweep import PARENT_TAG, SWEEP_TAG, find_sweep_parent
from litforge.utils.compat import mlflow_client, mlflow_run_id, mlflow_tracking_uri, set_mlflow_client

log = logging.getLogger(__name__)


class MLflowRunLogger(MLFlowLogger):
    """Lightning's MLFlowLogger with litforge's defaults: the local store under `store_dir`,
    experiment = the task, run name = experiment config + overrides, and in a multirun the run is
    a child of the sweep's parent run. A server or store that stops answering does not stop the
    run: its writes wait in memory (`OutageTolerantClient`) and what is still unsent at the end is
    reported by `report_outage`."""

    def __init__(
        self,
        store_dir: str,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | Sequence[str] | None = None,
        log_best_checkpoint: bool = False,
        log_model: bool = False,
        registered_model_name: str | None = None,
        trusted_modules: Sequence[str] = (),
        run_dir: str | None = None,
        http_timeout: int | None = None,
        http_retries: int | None = None,
        retry_every: int | None = 60,
        **kwargs: Any,
    ) -> None:
        uri = resolve_tracking_uri(tracking_uri, store_dir)
        apply_http_settings(http_timeout, http_retries)
        # a resumed run (resume=<run dir>) continues its MLflow run
        kwargs.setdefault("run_id", run_ids.load(run_dir).get("mlflow"))
        kwargs.setdefault("artifact_location", local_artifact_location(uri, store_dir))
        # the config's `tags: [digits, cnn]` become MLflow tags digits=true, cnn=true
        tags = dict(tags) if isinstance(tags, Mapping) else dict.fromkeys(map(str, tags or []), "true")
        experiment_name = experiment_name or task_name()
        # Lightning opens the store here, which creates a new local store's tables
        with local_store_lock(uri):
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name or default_run_name(),
                tracking_uri=uri,
                tags=tags,
                **kwargs,
            )
        set_mlflow_client(self, OutageTolerantClient(mlflow_client(self), uri, retry_every or 60))
        # what to do with the best checkpoint at the end: upload the file, log it as an MLflow model,
        # register one of them (the model if logged, else the file, as before models were logged)
        self.upload_checkpoint = log_best_checkpoint or (bool(registered_model_name) and not log_model)
        self.log_model = log_model
        self.log_best_checkpoint = self.upload_checkpoint or log_model
        self.registered_model_name = registered_model_name
        self.trusted_modules = tuple(trusted_modules)
        sweep = sweep_dir()
        if sweep:
            self.tags[SWEEP_TAG] = sweep
            parent = find_sweep_parent(mlflow_client(self), experiment_name, sweep)
            if parent:
                self.tags[PARENT_TAG] = parent
            else:
                log.warning("no MLflow parent run for sweep %s: this run is not grouped under one", sweep)
        if uri.startswith("sqlite:"):
            log.info("MLflow runs in %s; browse them with: mlflow ui --backend-store-uri %s", store_dir, uri)

    def report_outage(self, kept_locally: str) -> None:
        """At the end of the run: send what an outage kept back, or say what the tracker lacks."""
        client = mlflow_client(self)
        if client.flush():
            return
        log.warning(
            "MLflow: %s has not answered since %s (%s), so run %s lacks what was logged since then "
            "(%s). Nothing else is lost: %s.",
            mlflow_tracking_uri(self),
            f"{client.down_since:%Y-%m-%d %H:%M:%S}",
            client.error,
            mlflow_run_id(self),
            client.unsent(),
            kept_locally,
        )


def log_checkpoint(logger: MLFlowLogger, path: str) -> None:
    """The best checkpoint: uploaded as `checkpoints/<file>` where asked, logged as the MLflow model
    `model` (pyfunc) with `log_model`, and registered as a new version when a model name is set."""
    client, run_id = logger.experiment, logger.run_id
    if getattr(logger, "upload_checkpoint", True):
        client.log_artifact(run_id, path, "checkpoints")
    name = getattr(logger, "registered_model_name", None)
    if getattr(logger, "log_model", False):
        _log_model(logger, path, name)
    elif name:
        _register_or_warn(client, name, f"runs:/{run_id}/checkpoints", run_id, None, "the best checkpoint")


def _log_model(logger: "MLflowRunLogger", path: str, name: str | None) -> None:
    from litforge.tracking.pyfunc import MODEL_NAME, log_model

    client, run_id, uri = logger.experiment, logger.run_id, mlflow_tracking_uri(logger)
    if getattr(client, "down_since", None) is None:
        try:
            logged = log_model(path, run_id, MODEL_NAME, uri, trusted_modules=logger.trusted_modules)
        except Exception as err:
            if not is_outage(err):
                raise
        else:
            log.info(
                "logged the best checkpoint as MLflow model %s (runs:/%s/%s)", logged.model_uri, run_id, MODEL_NAME
            )
            if name:
                _register_or_warn(client, name, logged.model_uri, run_id, logged.model_id, "the MLflow model")
            return
    # like a registration, the model's logging answers with what it made, so it is not kept for later
    call = f"log_model({path!r}, {run_id!r}, tracking_uri={uri!r}" + (
        f", registered_model_name={name!r})" if name else ")"
    )
    log.warning(
        "MLflow does not answer: the best checkpoint was not logged as an MLflow model%s. Once it "
        'answers, log it with: python -c "from litforge.tracking.pyfunc import log_model; %s"',
        f" nor registered as model {name}" if name else "",
        call,
    )


def _register_or_warn(client: Any, name: str, source: str, run_id: str, model_id: str | None, what: str) -> None:
    from litforge.tracking.pyfunc import register

    if getattr(client, "down_since", None) is None:
        try:
            version = register(client, name, source, run_id, model_id)
            log.info("registered %s as model %s version %s", what, name, version.version)
            return
        except Exception as err:
            if not is_outage(err):
                raise
    # unlike a write, a registration is not kept for later: it answers with the version it made
    log.warning(
        "MLflow does not answer: %s was not registered as model %s. Once the run's artifacts are "
        "there, register it with mlflow.register_model(%r, %r).",
        what,
        name,
        source,
        name,
    )
