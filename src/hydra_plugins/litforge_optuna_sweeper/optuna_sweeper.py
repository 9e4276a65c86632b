"""Hydra sweeper driving an Optuna study through ask/tell.

hydra-optuna-sweeper pins optuna<3, whose SQLite storage fails on SQLAlchemy 2 (which MLflow
needs), so an interrupted study could not resume. This sweeper keeps that plugin's config
surface (sampler, direction, study_name, storage, n_trials, n_jobs, max_failure_rate, params)
on current Optuna. Optuna is imported when a sweep starts: Hydra imports every plugin module
on every run.
"""

import logging
import math
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
    ) -> None:
        if n_trials < 1 or n_jobs < 1:
            raise SearchSpaceError(f"hydra.sweeper: n_trials={n_trials} and n_jobs={n_jobs} must both be at least 1")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise SearchSpaceError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: give a fraction in [0, 1]")
        self.sampler_config = sampler
        self.directions = normalise_direction(direction)
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = dict(params or {})

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
        from optuna.trial import TrialState

        space, fixed = self.search_space(arguments)
        if not space:
            raise SearchSpaceError("the Optuna sweeper has nothing to search: set hydra.sweeper.params or sweep a key")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        study = self.open_study()
        done_states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        finished = len(study.get_trials(deepcopy=False, states=done_states))
        remaining = self.n_trials - finished
        log.info(
            "Optuna study %s (%s, %s): %d of %d trials already finished; searching %s",
            study.study_name,
            self.storage or "in memory",
            "/".join(self.directions),
            finished,
            self.n_trials,
            ", ".join(f"{k}: {d}" for k, d in space.items()),
        )
        if remaining <= 0:
            log.warning(
                "study %s already has %d finished trials: raise hydra.sweeper.n_trials to run more",
                study.study_name,
                finished,
            )
        launched = failed = 0
        while launched < remaining:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining - launched))]
            batch = [[*fixed, *(f"{k}={override_value(t.params[k], self.parser)}" for k in space)] for t in trials]
            try:
                self.validate_batch_is_legal(batch)
            except Exception:
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL)
                raise
            jobs = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, job in zip(trials, jobs, strict=True):
                values = objective_values(job, len(self.directions))
                if values is None:
                    failed += 1
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, values if len(values) > 1 else values[0])
            launched += len(trials)
            if failed / launched > self.max_failure_rate:
                self.stop(
                    study,
                    sweep_dir,
                    f"{failed} of {launched} trials failed, more than hydra.sweeper.max_failure_rate="
                    f"{self.max_failure_rate}",
                )
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self.stop(study, sweep_dir, f"no trial of study {study.study_name} completed")
        self.write_results(study, sweep_dir)

    def stop(self, study: Any, sweep_dir: Path, reason: str) -> None:
        """End the sweep with an error, after the results and the end-of-sweep callbacks
        (trials.csv, the tracker's parent run) have had their turn."""
        self.write_results(study, sweep_dir)
        self.hydra_context.callbacks.on_multirun_end(config=self.config)
        raise SweepFailed(f"{reason}; each failed job's error is in its log under {sweep_dir}")

    def open_study(self) -> Any:
        """Create the study, or load it from `storage` to resume: trials an interrupted sweep left
        running are marked failed, and a seeded sampler is reseeded past the finished trials so a
        resumed study does not draw its first points again."""
        import optuna
        from hydra.utils import instantiate
        from optuna.trial import TrialState

        stored = None
        if self.storage and self.study_name:
            try:
                stored = optuna.load_study(study_name=self.study_name, storage=self.storage)
            except KeyError:
                pass  # no such study yet: created below
        sampler_config = self.sampler_config
        if isinstance(sampler_config, DictConfig):
            sampler_config = OmegaConf.to_container(sampler_config, resolve=True)
        if stored is not None:
            if [d.name.lower() for d in stored.directions] != self.directions:
                raise SearchSpaceError(
                    f"study {self.study_name} in {self.storage} was created to "
                    f"{'/'.join(d.name.lower() for d in stored.directions)}, not {'/'.join(self.directions)}; "
                    "give another hydra.sweeper.study_name"
                )
            previous = len(stored.trials)
            if isinstance(sampler_config, dict) and sampler_config.get("seed") is not None:
                sampler_config["seed"] = int(sampler_config["seed"]) + previous
            for trial in stored.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                log.warning("trial %d of study %s was left running: marked failed", trial.number, self.study_name)
                stored.tell(trial.number, state=TrialState.FAIL)
        sampler = instantiate(sampler_config) if isinstance(sampler_config, dict) else sampler_config
        return optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=sampler,
            directions=self.directions,
            load_if_exists=True,
        )

    def write_results(self, study: Any, sweep_dir: Path) -> None:
        """`optimization_results.yaml`: the best trial(s) of the whole study, resumed parts included."""
        from optuna.trial import TrialState

        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "directions": self.directions,
            "n_trials": len(study.trials),
            "n_complete": len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
            "n_failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
        }
        if results["n_complete"] == 0:
            log.warning("no trial of study %s completed", study.study_name)
        elif len(self.directions) == 1:
            best = study.best_trial
            results.update(best_trial=best.number, best_params=best.params, best_value=best.value)
            log.info("best trial %d: value %s with %s", best.number, best.value, best.params)
        else:
            front = study.best_trials
            results["best_trials"] = [{"number": t.number, "params": t.params, "values": t.values} for t in front]
            log.info("Pareto front: trials %s", [t.number for t in front])
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
