"""One MLflow parent run per multirun, holding the sweep's config and best value; each job's run
is its child. It works with every sweeper and launcher (parallel ones too) because nothing is
handed to the jobs: they find the parent by a tag holding the sweep directory, and the best value
is read at the end from the metrics.json files the jobs write."""

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from litforge.tracking.outage import is_outage
from litforge.tracking.run_info import flat_params, task_name
from litforge.tracking.settings import (
    apply_http_settings,
    check_tracking_uri,
    local_artifact_location,
    local_store_lock,
    resolve_tracking_uri,
)
from litforge.utils.errors import report_user_errors

log = logging.getLogger(__name__)

SWEEP_TAG = "litforge.sweep_dir"
ROLE_TAG = "litforge.role"
RUN_DIR_TAG = "litforge.run_dir"
PARENT_TAG = "mlflow.parentRunId"
# what MLflow allows in a param key
BAD_KEY_CHARS = re.compile(r"[^\w\-./ ]")
# files a sweep leaves in its directory (Hydra's config, Optuna's result, the trials table)
SWEEP_FILES = ("multirun.yaml", "optimization_results.yaml", "trials.csv")


def tag_is(key: str, value: str) -> str:
    """An MLflow search filter: tag `key` equals `value`."""
    quoted = str(value).replace("'", "\\'")
    return f"tags.`{key}` = '{quoted}'"


def find_sweep_parent(client: Any, experiment_name: str, sweep: str) -> str | None:
    """The id of the parent run made for this sweep directory, or None; the first one made where
    workers sharing the directory made one each at once."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    query = f"{tag_is(SWEEP_TAG, sweep)} and {tag_is(ROLE_TAG, 'sweep')}"
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=query, max_results=1, order_by=["attributes.start_time ASC"]
    )
    return runs[0].info.run_id if runs else None


def sweep_params(config: DictConfig) -> dict[str, str]:
    """The sweep as params: the command-line overrides (the swept lists) and the sweeper's settings."""
    hydra = config.hydra
    overrides = dict(line.partition("=")[::2] for line in hydra.overrides.task)
    params = {
        **flat_params({k.lstrip("+~"): v for k, v in overrides.items()}, "sweep."),
        **flat_params(OmegaConf.to_container(hydra.sweeper, resolve=True), "sweeper."),
        "launcher": hydra.launcher._target_,
        "optimized_metric": config.get("optimized_metric"),
    }
    return {BAD_KEY_CHARS.sub("_", k): str(v) for k, v in params.items()}


def best_job(sweep: Path, metric: str, maximize: bool) -> tuple[float, Path] | None:
    """The best finite value of `metric` among the jobs' metrics.json files, and that job's dir."""
    results = []
    for path in sweep.rglob("metrics.json"):
        value = json.loads(path.read_text()).get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            results.append((float(value), path.parent))
    if not results:
        return None
    return (max if maximize else min)(results, key=lambda result: result[0])


def _maximize(config: DictConfig) -> bool:
    direction = config.hydra.sweeper.get("direction")
    if isinstance(direction, str):
        return direction.lower() in ("max", "maximize")
    return OmegaConf.select(config, "model.mode", default="min") == "max"


def _mlflow_entry(config: DictConfig) -> DictConfig | None:
    for entry in (config.get("logger") or {}).values():
        if isinstance(entry, DictConfig) and str(entry.get("_target_", "")).endswith("MLflowRunLogger"):
            return entry
    return None


class MLflowSweepRun(Callback):
    """Hydra callback (chosen by logger=mlflow): the parent run of a multirun's job runs."""

    def _open(self, entry: DictConfig, config: DictConfig) -> tuple[Any, str, str]:
        from mlflow.tracking import MlflowClient

        uri = resolve_tracking_uri(entry.tracking_uri, entry.store_dir)
        apply_http_settings(entry.get("http_timeout"), entry.get("http_retries"))
        name = entry.experiment_name or task_name(config.hydra)
        with local_store_lock(uri):
            client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return client, experiment.experiment_id, name
        location = local_artifact_location(uri, entry.store_dir)
        return client, client.create_experiment(name, artifact_location=location), name

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        entry = _mlflow_entry(config)
        if entry is None:
            return
        with report_user_errors():
            check_tracking_uri(entry.tracking_uri)
        from mlflow.entities import Param

        client, experiment_id, name = self._open(entry, config)
        sweep = str(Path(config.hydra.sweep.dir).resolve())
        joined = find_sweep_parent(client, name, sweep)
        if joined is not None:
            # another worker of the same study and sweep directory made it: this one's jobs join it
            client.update_run(joined, status="RUNNING")
            log.info("MLflow: joining sweep parent run %s in experiment %s", joined, name)
            return
        tags = {SWEEP_TAG: sweep, ROLE_TAG: "sweep", **dict.fromkeys(map(str, config.get("tags") or []), "true")}
        run = client.create_run(experiment_id, run_name=f"sweep {Path(sweep).name}", tags=tags)
        params = [Param(k, v) for k, v in sweep_params(config).items()]
        for start in range(0, len(params), 100):
            client.log_batch(run.info.run_id, params=params[start : start + 100])
        first = find_sweep_parent(client, name, sweep)
        if first != run.info.run_id:
            # workers that started at once each made a parent: all keep the first one
            client.delete_run(run.info.run_id)
            log.info("MLflow: joining sweep parent run %s in experiment %s", first, name)
            return
        log.info("MLflow: sweep parent run %s in experiment %s", run.info.run_id, name)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        entry = _mlflow_entry(config)
        if entry is None:
            return
        try:
            self._close_parent(entry, config)
        except Exception as err:
            if not is_outage(err):
                raise
            # the jobs' results are on disk (trials.csv, metrics.json): only the parent run misses them
            log.warning("MLflow does not answer: the sweep's parent run lacks its best value and files (%s)", err)

    def _close_parent(self, entry: DictConfig, config: DictConfig) -> None:
        client, experiment_id, name = self._open(entry, config)
        sweep = Path(config.hydra.sweep.dir).resolve()
        parent = find_sweep_parent(client, name, str(sweep))
        if parent is None:
            return
        metric = config.get("optimized_metric")
        # a list of objectives (a Pareto front) has no single best job
        best = best_job(sweep, metric, _maximize(config)) if isinstance(metric, str) else None
        if best is not None:
            value, run_dir = best
            client.log_metric(parent, metric, value)
            client.set_tag(parent, "best_run_dir", str(run_dir))
            runs = client.search_runs([experiment_id], filter_string=tag_is(RUN_DIR_TAG, str(run_dir)))
            if runs:
                client.set_tag(parent, "best_run_id", runs[0].info.run_id)
            log.info("MLflow: best %s = %.6f (%s)", metric, value, run_dir)
        for file in SWEEP_FILES:
            if (sweep / file).is_file():
                client.log_artifact(parent, str(sweep / file))
        client.set_terminated(parent)
