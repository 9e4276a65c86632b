"""The side of the devices launcher that runs in each job's own process."""

import functools
import importlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskByName:
    """A task function sent as module and name, so tracebacks in the job's log keep their files and
    lines: cloudpickle copies the code of a `__main__` function without them. The job's process
    imports the main module again (multiprocessing's spawn does), where Hydra's decorator wraps it."""

    module: str
    qualname: str

    def resolve(self) -> Callable:
        return inspect.unwrap(getattr(importlib.import_module(self.module), self.qualname))


def sendable_task(task_function: Callable) -> Callable | TaskByName:
    """`task_function` by name where its module's attribute of that name unwraps to it, else itself."""
    found = getattr(sys.modules.get(task_function.__module__), task_function.__qualname__, None)
    if found is not None and inspect.unwrap(found) is task_function:
        return TaskByName(task_function.__module__, task_function.__qualname__)
    return task_function


def job_config(hydra_context: HydraContext, config: DictConfig, overrides: Sequence[str], idx: int) -> DictConfig:
    """Job `idx`'s composed config, numbered as Hydra's own launchers number it."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    return sweep_config


def _run(shared: bytes, idx: int, overrides: list[str], announcement: str) -> JobReturn:
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    hydra_context, config, task_function, singleton_state = cloudpickle.loads(shared)
    if isinstance(task_function, TaskByName):
        task_function = task_function.resolve()
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = job_config(hydra_context, config, overrides, idx)
    HydraConfig.instance().set_config(sweep_config)

    @functools.wraps(task_function)
    def announced(cfg: DictConfig) -> Any:
        # here the job's own logging is set up, so the line lands in its log file
        log.info("%s", announcement)
        return task_function(cfg)

    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=announced,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def _as_bytes(message: tuple) -> bytes:
    """The message pickled; an exception pickle refuses (one whose constructor takes other
    arguments, say) travels as a RuntimeError with its type and text."""
    import cloudpickle

    from litforge.utils.compat import job_result

    try:
        return cloudpickle.dumps(message)
    except Exception as error:
        unsendable = RuntimeError(f"the job's result could not be sent back: {type(error).__name__}: {error}")
    kind, body = message[0], message[1]
    if kind == "error":
        return cloudpickle.dumps((kind, RuntimeError(f"{type(body).__name__}: {body}"), message[2]))
    original = job_result(body)
    if body.status == JobStatus.FAILED and isinstance(original, BaseException):
        body.return_value = RuntimeError(f"{type(original).__name__}: {original}")
    else:
        body.status, body.return_value = JobStatus.FAILED, unsendable
    return cloudpickle.dumps((kind, body))


def run_in_slot(
    shared: bytes, idx: int, overrides: list[str], cores: Sequence[int], announcement: str, conn: Connection
) -> None:
    """Entry point of job `idx`'s process: its environment came from the launcher at start; the
    cores are claimed here, before unpickling `shared` (the sweep's Hydra context, config and task
    function) imports the task's modules."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    try:
        message: tuple = ("done", _run(shared, idx, overrides, announcement))
    except Exception as error:
        # outside the task function (composing the job's config, a callback): the sweep's own error,
        # as Hydra's sequential launcher would raise it
        message = ("error", error, traceback.format_exc())
    conn.send_bytes(_as_bytes(message))
    conn.close()
