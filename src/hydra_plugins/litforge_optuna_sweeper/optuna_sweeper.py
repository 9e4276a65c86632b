"""Hydra sweeper driving an Optuna study through ask/tell.

hydra-optuna-sweeper pins optuna<3, whose SQLite storage fails on SQLAlchemy 2 (which MLflow
needs), so an interrupted study could not resume. This sweeper keeps that plugin's config
surface (sampler, direction, study_name, storage, n_trials, n_jobs, max_failure_rate, params)
on current Optuna. Optuna is imported when a sweep starts: Hydra imports every plugin module
on every run.
"""

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.litforge_optuna_sweeper.study import (
    DIR_ATTR,
    JOURNAL_PREFIX,
    OVERRIDES_ATTR,
    PRUNED_ATTR,
    PRUNERS,
    WORKER_ATTR,
    WORKERS_ATTR,
    Budget,
    Heartbeat,
    StudyError,
    budget_lock,
    fail_stale_trials,
    fail_unbeaten_trials,
    heartbeat_enabled,
    make_storage,
    start_beating,
    trial_link,
    worker_name,
)
from litforge.utils.compat import optuna_trial_id
from litforge.utils.sweep import FIELDS, job_record, write_rows

log = logging.getLogger(__name__)

DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}


class SearchSpaceError(CompactHydraException, ValueError):
    """A sweep parameter Optuna cannot search; the message names it and what would work."""


class SweepFailed(CompactHydraException):
    """Too many trials failed; Hydra prints the message alone and exits with status 1."""


def normalise_direction(direction: str | Sequence[str]) -> list[str]:
    """`max`/`min` (a task's monitor mode) or Optuna's `maximize`/`minimize`, one per objective."""
    names = [direction] if isinstance(direction, str) else list(direction)
    bad = [d for d in names if str(d).lower() not in DIRECTIONS]
    if bad or not names:
        raise SearchSpaceError(
            f"hydra.sweeper.direction={direction}: give maximize|minimize (or max|min), "
            "or a list of them for several objectives"
        )
    return [DIRECTIONS[str(d).lower()] for d in names]


def distribution_of(override: Override) -> Any:
    """The Optuna distribution a Hydra sweep override describes: choice(...) and a,b,c are
    categorical, range(...) is a stepped int/float, interval(...) is continuous
    (`int(interval(...))` for integers, `tag(log, ...)` for a log scale)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, sweep = override.get_key_element(), override.value()
    log_scale = "log" in getattr(sweep, "tags", set())
    if isinstance(sweep, ChoiceSweep):
        bad = [v for v in sweep.list if v is not None and not isinstance(v, bool | int | float | str)]
        if bad:
            raise SearchSpaceError(f"{key}: choice values must be numbers, strings, booleans or null, got {bad[0]!r}")
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        count = math.ceil((stop - start) / step) if step else 0
        if count < 1:
            raise SearchSpaceError(f"{key}=range({start}, {stop}, {step}) holds no value")
        low, high = sorted((start, start + (count - 1) * step))
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(low, high, step=abs(step))
        return FloatDistribution(low, high, step=abs(step))
    if isinstance(sweep, IntervalSweep):
        if sweep.start >= sweep.end:
            raise SearchSpaceError(f"{key}: interval({sweep.start}, {sweep.end}) needs start < end")
        if log_scale and sweep.start <= 0:
            raise SearchSpaceError(f"{key}: a log-scale interval needs start > 0, got {sweep.start}")
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return IntDistribution(sweep.start, sweep.end, log=log_scale)
        return FloatDistribution(sweep.start, sweep.end, log=log_scale)
    raise SearchSpaceError(
        f"{override.input_line}: the Optuna sweeper searches choice(...), a,b,c, range(...) and interval(...)"
    )


def override_value(value: Any, parser: OverridesParser) -> str:
    """A sampled value written so Hydra reads back exactly that value (strings quoted only when needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return repr(value)
    try:
        if parser.parse_override(f"k={value}").value() == value:
            return value
    except Exception:
        pass
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


STATUS = {"COMPLETE": "COMPLETED", "FAIL": "FAILED"}
TABLE_FIELDS = [*FIELDS, "dir", "worker"]


def write_study_table(sweep_dir: Path, trials: list[Any]) -> None:
    """trials.csv with one row per trial: status, value (a pruned trial's last reported one),
    the job's error from its folder, the overrides and that folder (which other workers may have
    under their own sweep directory)."""
    retries = {t.system_attrs["failed_trial"]: t.number for t in trials if "failed_trial" in t.system_attrs}
    rows = []
    for trial in trials:
        job_dir = trial.user_attrs.get(DIR_ATTR)
        record = job_record(Path(job_dir)) if job_dir else None
        status = STATUS.get(trial.state.name, trial.state.name)
        error = record.get("error") if record else None
        if status == "FAILED" and not error:
            error = "its worker stopped (no heartbeat)"
        if trial.number in retries:
            error = f"{error}; retried as trial {retries[trial.number]}"
        value = trial.values if trial.values is None or len(trial.values) > 1 else trial.values[0]
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        rows.append(
            {
                "job": trial.number,
                "status": status,
                "value": value,
                "error": error,
                "overrides": trial.user_attrs.get(OVERRIDES_ATTR, []),
                "dir": job_dir,
                "worker": trial.user_attrs.get(WORKER_ATTR),
            }
        )
    if rows:
        write_rows(sweep_dir, rows, TABLE_FIELDS)


def consecutive_runs(trials: list[Any]) -> list[list[Any]]:
    """Trials split where their numbers stop following one another (other workers took the gaps)."""
    runs: list[list[Any]] = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


def objective_values(job: JobReturn, n_objectives: int) -> list[float] | None:
    """The job's returned value(s) as floats, or None when the trial must count as failed."""
    if job.status != JobStatus.COMPLETED:
        return None
    value = job.return_value
    values = list(value) if isinstance(value, list | tuple) else [value]
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        log.error("job %s returned %r, not a number: counted as a failed trial", job.overrides, value)
        return None
    if len(floats) != n_objectives or not all(math.isfinite(v) for v in floats):
        log.error("job %s returned %r for %d objective(s): a failed trial", job.overrides, value, n_objectives)
        return None
    return floats


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: str | Sequence[str],
        study_name: str | None,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float = 0.0,
        params: dict[str, str] | None = None,
        heartbeat_interval: int | None = 30,
        grace_period: int | None = None,
        max_retry: int = 1,
        pruner: str = "none",
        pruner_settings: dict[str, Any] | None = None,
    ) -> None:
        if n_trials < 1 or n_jobs < 1:
            raise SearchSpaceError(f"hydra.sweeper: n_trials={n_trials} and n_jobs={n_jobs} must both be at least 1")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise SearchSpaceError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: give a fraction in [0, 1]")
        if str(pruner) not in PRUNERS:
            raise SearchSpaceError(f"hydra.sweeper.pruner={pruner}: give one of {', '.join(PRUNERS)}")
        if max_retry < 0:
            raise SearchSpaceError(f"hydra.sweeper.max_retry={max_retry}: give 0 (no retry) or more")
        self.sampler_config = sampler
        self.directions = normalise_direction(direction)
        if pruner != "none" and len(self.directions) > 1:
            raise SearchSpaceError(f"hydra.sweeper.pruner={pruner}: Optuna prunes single-objective studies only")
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = dict(params or {})
        self.heartbeat = (heartbeat_interval, grace_period, max_retry)
        self.pruner = str(pruner)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.parser = OverridesParser.create(config_loader=hydra_context.config_loader)

    def search_space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Distributions to sample and fixed overrides, from `params` and the command line (which wins)."""
        lines = [f"{key}={value}" for key, value in self.params.items()] + list(arguments)
        by_key = {o.get_key_element(): o for o in self.parser.parse_overrides(lines)}
        space = {k: distribution_of(o) for k, o in by_key.items() if o.is_sweep_override()}
        fixed = [o.input_line for o in by_key.values() if not o.is_sweep_override()]
        return space, fixed

    def sweep(self, arguments: list[str]) -> None:
        """One worker of the study: any number of them, started with the same command on one storage,
        share its `n_trials` until the study has that many finished trials."""
        from optuna.trial import TrialState

        space, fixed = self.search_space(arguments)
        if not space:
            raise SearchSpaceError("the Optuna sweeper has nothing to search: set hydra.sweeper.params or sweep a key")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        # without a storage the study lives in a journal file of this sweep, which its jobs (other
        # processes under joblib or SLURM) report to
        self.url = self.storage or f"{JOURNAL_PREFIX}{(sweep_dir / 'optuna.journal').resolve()}"
        try:
            self.store = make_storage(self.url, *self.heartbeat)
        except StudyError as err:
            raise SearchSpaceError(str(err)) from None
        study = self.open_study()
        budget = Budget.of(study.get_trials(deepcopy=False))
        log.info(
            "Optuna study %s (%s, %s): %d of %d trials finished, %d running; searching %s",
            study.study_name,
            self.storage or "this sweep's journal",
            "/".join(self.directions),
            budget.finished,
            self.n_trials,
            budget.active,
            ", ".join(f"{k}: {d}" for k, d in space.items()),
        )
        if budget.finished >= self.n_trials:
            log.warning(
                "study %s already has %d finished trials: raise hydra.sweeper.n_trials to run more",
                study.study_name,
                budget.finished,
            )
        launched = failed = 0
        while True:
            trials = self.ask(study, space)
            if trials is None:
                break
            if not trials:
                # the rest of the budget is running on other workers: wait for them to finish, or for
                # their heartbeat to stop (their trials are then failed and retried here)
                time.sleep(min(5, self.heartbeat[0] or 5))
                continue
            failed += self.run_trials(study, trials, fixed, space, sweep_dir)
            launched += len(trials)
            self.write_results(study, sweep_dir)
            if failed / launched > self.max_failure_rate:
                self.stop(
                    study,
                    sweep_dir,
                    f"{failed} of {launched} trials failed, more than hydra.sweeper.max_failure_rate="
                    f"{self.max_failure_rate}",
                )
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            self.stop(study, sweep_dir, f"no trial of study {study.study_name} completed")
        results = self.write_results(study, sweep_dir)
        if "best_trial" in results:
            best = (results["best_trial"], results["best_value"], results["best_params"])
            log.info("best trial %d: value %s with %s", *best)
        elif "best_trials" in results:
            log.info("Pareto front: trials %s", [t["number"] for t in results["best_trials"]])

    def ask(self, study: Any, space: dict[str, Any]) -> list[Any] | None:
        """This worker's next trials: None when the study has its `n_trials`, [] when the rest of
        the budget is running elsewhere. Trials retried after a dead worker come first."""
        fail_stale_trials(study)
        with budget_lock(self.url, self.store, study.study_name):
            budget = Budget.of(study.get_trials(deepcopy=False))
            if budget.finished >= self.n_trials:
                return None
            count = min(self.n_jobs, self.n_trials - budget.finished - budget.active)
            if count <= 0:
                return [] if heartbeat_enabled(self.store) else None
            # waiting trials (retries) are handed out by ask() before new ones
            trials = [study.ask(space) for _ in range(count)]
            if heartbeat_enabled(self.store):
                for trial in trials:
                    start_beating(self.store, optuna_trial_id(trial))
        return trials

    def run_trials(
        self, study: Any, trials: list[Any], fixed: list[str], space: dict[str, Any], sweep_dir: Path
    ) -> int:
        """Launch the trials (job folders named by trial number), tell the study how each ended;
        returns how many failed."""
        from optuna.trial import TrialState

        overrides = {
            t.number: [*fixed, *(f"{k}={override_value(t.params[k], self.parser)}" for k in space)] for t in trials
        }
        for trial in trials:
            trial.set_user_attr(OVERRIDES_ATTR, overrides[trial.number])
            trial.set_user_attr(DIR_ATTR, str((sweep_dir / str(trial.number)).resolve()))
            trial.set_user_attr(WORKER_ATTR, worker_name())
        batch = [[*overrides[t.number], trial_link(self.url, study.study_name, t.number)] for t in trials]
        try:
            self.validate_batch_is_legal(batch)
        except Exception:
            for trial in trials:
                study.tell(trial, state=TrialState.FAIL)
            raise
        jobs = []
        with Heartbeat(self.store, [optuna_trial_id(t) for t in trials]):
            # the launcher numbers jobs from initial_job_idx on: one launch per run of consecutive numbers
            for run in consecutive_runs(trials):
                first = trials.index(run[0])
                jobs += self.launcher.launch(batch[first : first + len(run)], initial_job_idx=run[0].number)
        failed = 0
        for trial, job in zip(trials, jobs, strict=True):
            values = objective_values(job, len(self.directions))
            if values is None:
                failed += 1
                study.tell(trial, state=TrialState.FAIL)
            elif PRUNED_ATTR in self.store.get_trial(optuna_trial_id(trial)).user_attrs:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, values if len(values) > 1 else values[0])
        return failed

    def stop(self, study: Any, sweep_dir: Path, reason: str) -> None:
        """End the sweep with an error, after the results and the end-of-sweep callbacks
        (trials.csv, the tracker's parent run) have had their turn."""
        self.write_results(study, sweep_dir)
        self.hydra_context.callbacks.on_multirun_end(config=self.config)
        raise SweepFailed(f"{reason}; each failed job's error is in its log under {sweep_dir}")

    def open_study(self) -> Any:
        """Create the study, or load it from the storage to join or resume it. A seeded sampler is
        reseeded past the trials already there and the workers already started, so neither a
        resumed study nor a second worker draws the first points again. Trials of a worker that
        died are failed by heartbeat in `ask`; running trials no worker beats for are failed here
        (with heartbeats off, heartbeat_interval=null, that is every running trial: right only
        when no other worker is alive)."""
        import optuna
        from hydra.utils import instantiate

        study = optuna.create_study(
            study_name=self.study_name, storage=self.store, directions=self.directions, load_if_exists=True
        )
        if [d.name.lower() for d in study.directions] != self.directions:
            raise SearchSpaceError(
                f"study {study.study_name} in {self.storage} was created to "
                f"{'/'.join(d.name.lower() for d in study.directions)}, not {'/'.join(self.directions)}; "
                "give another hydra.sweeper.study_name"
            )
        with budget_lock(self.url, self.store, study.study_name):
            starts = int(study.user_attrs.get(WORKERS_ATTR, 0))
            study.set_user_attr(WORKERS_ATTR, starts + 1)
            previous = len(study.get_trials(deepcopy=False))
            fail_unbeaten_trials(study, self.store)
        sampler_config = self.sampler_config
        if isinstance(sampler_config, DictConfig):
            sampler_config = OmegaConf.to_container(sampler_config, resolve=True)
        if isinstance(sampler_config, dict) and sampler_config.get("seed") is not None:
            sampler_config["seed"] = int(sampler_config["seed"]) + previous + 7919 * starts
        study.sampler = instantiate(sampler_config) if isinstance(sampler_config, dict) else sampler_config
        return study

    def write_results(self, study: Any, sweep_dir: Path) -> dict[str, Any]:
        """`optimization_results.yaml` and `trials.csv`: the whole study (every worker's trials,
        resumed parts included), from the storage, so whichever worker writes last covers it all."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        write_study_table(sweep_dir, trials)
        budget = Budget.of(trials)
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "directions": self.directions,
            "n_trials": len(trials),
            "n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "n_pruned": budget.pruned,
            "n_failed": sum(t.state == TrialState.FAIL for t in trials),
            "n_retried": len(budget.retried),
        }
        if results["n_complete"] == 0:
            log.warning("no trial of study %s completed", study.study_name)
        elif len(self.directions) == 1:
            best = study.best_trial
            results.update(best_trial=best.number, best_params=best.params, best_value=best.value)
        else:
            front = study.best_trials
            results["best_trials"] = [{"number": t.number, "params": t.params, "values": t.values} for t in front]
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        return results
