"""What sweep workers sharing one Optuna study rely on: the storage (SQLite or another database
through SQLAlchemy, or a journal file on a shared file system), heartbeats, the study-wide trial
budget, and the link from a job, in whatever process it runs, back to its trial (to report and be
pruned). Hydra imports this package on every run: optuna is imported inside the functions.
"""

import functools
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "journal:"
# a job's link to its trial, set through hydra.job.env_set so it reaches the job wherever it runs
TRIAL_ENV = "LITFORGE_OPTUNA_TRIAL"
# trial attributes litforge keeps in the study
HEARTBEAT_ATTR = "litforge:heartbeat"
PRUNED_ATTR = "litforge:pruned_at_epoch"
DIR_ATTR = "litforge:dir"
OVERRIDES_ATTR = "litforge:overrides"
# the worker (host:pid) that ran a trial
WORKER_ATTR = "litforge:worker"
# study attribute: how many workers have joined the study (each reseeds its sampler apart)
WORKERS_ATTR = "litforge:workers"
PRUNERS = ("none", "median", "hyperband", "successive_halving")


class StudyError(ValueError):
    """A storage or pruner setting that cannot work; the message names it and what would."""


def journal_path(url: str) -> Path | None:
    """The file of a `journal:<path>` storage, None for a database URL."""
    return Path(url[len(JOURNAL_PREFIX) :]) if url.startswith(JOURNAL_PREFIX) else None


def make_storage(url: str, heartbeat_interval: int | None, grace_period: int | None, max_retry: int) -> Any:
    """The storage for `hydra.sweeper.storage`: `journal:<file>` (Optuna's journal file storage,
    for a shared file system), or a SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...).
    With a heartbeat interval, a trial whose worker stops beating is failed by the next worker
    that looks and, up to `max_retry` times, asked again with the same parameters."""
    import optuna

    if heartbeat_interval is not None and heartbeat_interval < 1:
        raise StudyError(f"hydra.sweeper.heartbeat_interval={heartbeat_interval}: give whole seconds >= 1, or null")
    if grace_period is not None and heartbeat_interval is not None and grace_period <= heartbeat_interval:
        raise StudyError(
            f"hydra.sweeper.grace_period={grace_period} must exceed heartbeat_interval={heartbeat_interval}"
        )
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if max_retry > 0 else None
    path = journal_path(url)
    if path is not None:
        from optuna.storages.journal import JournalFileBackend

        path.parent.mkdir(parents=True, exist_ok=True)
        return journal_storage_class()(JournalFileBackend(str(path)), heartbeat_interval, grace_period, retry)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url,
            # several workers on one SQLite file wait for its lock rather than fail at once
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=retry,
        )
    except Exception as err:
        raise StudyError(
            f"hydra.sweeper.storage={url}: cannot open it ({type(err).__name__}: {err}); give a SQLAlchemy URL "
            "(sqlite:///logs/optuna.db, postgresql+psycopg://user@host/db) or journal:<file>"
        ) from err


@functools.cache
def journal_storage_class() -> type:
    """Optuna's journal storage with heartbeats, which Optuna keeps for its database storage only.
    A heartbeat is a trial system attribute holding the writer's clock, so the workers' clocks
    must agree to well within the grace period (NTP does)."""
    from optuna.storages import JournalStorage
    from optuna.trial import TrialState

    from litforge.utils.compat import optuna_heartbeat_base

    class HeartbeatJournalStorage(JournalStorage, optuna_heartbeat_base()):
        def __init__(self, backend: Any, interval: int | None, grace: int | None, callback: Any) -> None:
            super().__init__(backend)
            self._interval, self._grace, self._callback = interval, grace, callback

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            grace = self._grace if self._grace is not None else 2 * (self._interval or 0)
            now = time.time()
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            return [
                t._trial_id
                for t in running
                if HEARTBEAT_ATTR in t.system_attrs and now - t.system_attrs[HEARTBEAT_ATTR] > grace
            ]

        def get_heartbeat_interval(self) -> int | None:
            return self._interval

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return self._callback

    return HeartbeatJournalStorage


def heartbeat_enabled(storage: Any) -> bool:
    return getattr(storage, "get_heartbeat_interval", lambda: None)() is not None


def fail_stale_trials(study: Any) -> None:
    """Trials whose worker stopped beating become FAIL (and are queued again when retries are on)."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def worker_name() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def start_beating(storage: Any, trial_id: int) -> None:
    """Mark a trial as run by a beating worker (a running trial without the mark was left by one
    that does not beat, and is failed when a worker joins) and record its first heartbeat."""
    storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
    storage.record_heartbeat(trial_id)


def fail_unbeaten_trials(study: Any, storage: Any) -> None:
    """Running trials no worker beats for (an interrupted sweep with heartbeats off, a trial asked
    by hand): nothing would ever finish them, so they are failed. Call under the budget lock."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not heartbeat_enabled(storage) or HEARTBEAT_ATTR not in trial.system_attrs:
            log.warning("trial %d of study %s was left running: marked failed", trial.number, study.study_name)
            study.tell(trial.number, state=TrialState.FAIL)


class Heartbeat:
    """Beats for the given trials from a thread of this worker until stopped: a worker that dies
    stops beating, and the others fail and retry its trials once the grace period has passed."""

    def __init__(self, storage: Any, trial_ids: list[int]) -> None:
        self.storage, self.trial_ids = storage, trial_ids
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        if heartbeat_enabled(self.storage):
            self.thread = threading.Thread(target=self._beat, daemon=True, name="optuna-heartbeat")
            self.thread.start()
        return self

    def _beat(self) -> None:
        while not self.stopped.wait(self.storage.get_heartbeat_interval()):
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # a finished trial, a storage that blinked: the next beat retries
                    log.debug("heartbeat of trial %s: %s", trial_id, err)

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()


@contextmanager
def budget_lock(url: str, storage: Any, study_name: str) -> Iterator[None]:
    """Held while a worker counts the study's trials and asks for new ones, so that workers
    starting at once never ask for more than the study-wide budget: a file lock beside a journal
    or SQLite file, an advisory lock on PostgreSQL. Other databases go without it (rarely, a
    worker may then run one trial over the budget)."""
    from filelock import FileLock

    path = journal_path(url) or (Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None)
    if path is not None:
        with FileLock(f"{path}.lock.budget"):
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    key = zlib.crc32(f"litforge-budget:{study_name}".encode())
    with storage.engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


@dataclass
class Budget:
    """The study's trials as the budget counts them: a failed trial that was retried is replaced
    by its retry and does not count itself."""

    finished: int
    active: int
    pruned: int
    retried: set[int]

    @classmethod
    def of(cls, trials: list[Any]) -> "Budget":
        from optuna.trial import TrialState

        retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
        counted = [t for t in trials if t.number not in retried]
        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return cls(
            finished=sum(t.state in done for t in counted),
            active=sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in counted),
            pruned=sum(t.state == TrialState.PRUNED for t in counted),
            retried=retried,
        )


def trial_link(storage_url: str, study_name: str, number: int) -> str:
    """The job's override that tells it its trial (read back by `linked_trial`)."""
    value = json.dumps({"storage": storage_url, "study": study_name, "trial": number})
    return f"+hydra.job.env_set.{TRIAL_ENV}='{value}'"


def make_pruner(name: str, settings: dict[str, Any] | None, max_epochs: int | None) -> Any:
    """`hydra.sweeper.pruner`: median | hyperband | successive_halving | none, with
    `hydra.sweeper.pruner_settings` passed to the Optuna pruner's constructor."""
    import optuna

    settings = dict(settings or {})
    if name == "median":
        return optuna.pruners.MedianPruner(**{"n_startup_trials": 4, "n_warmup_steps": 1, **settings})
    if name == "hyperband":
        top = max_epochs if max_epochs and max_epochs > 0 else "auto"
        return optuna.pruners.HyperbandPruner(**{"min_resource": 1, "max_resource": top, **settings})
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**{"min_resource": 1, **settings})
    if name == "none":
        return optuna.pruners.NopPruner()
    raise StudyError(f"hydra.sweeper.pruner={name}: give one of {', '.join(PRUNERS)}")


def linked_trial() -> dict[str, Any] | None:
    """In a job of an Optuna sweep: its storage URL, study name and trial number."""
    value = os.environ.get(TRIAL_ENV)
    return json.loads(value) if value else None
