"""Hydra launcher running several jobs of a multirun at once, each in a fresh process that owns its
GPUs (CUDA_VISIBLE_DEVICES) and CPU cores (affinity, OMP_NUM_THREADS).

joblib's workers are reused and share one environment, but CUDA_VISIBLE_DEVICES only counts before
CUDA starts in a process: each job gets a new process (multiprocessing's spawn), started with its
slot's environment. Jobs are handed to Hydra's `run_job` as the joblib launcher does.
"""

import copy
import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.litforge_devices_launcher import job as job_side
from hydra_plugins.litforge_devices_launcher.slots import Slot, plan_slots, usable_cores, visible_gpus

log = logging.getLogger(__name__)


# why a job's process may die without a Python error
SIGNAL_HINTS = {"SIGKILL": " (the kernel's out-of-memory killer sends it)", "SIGSEGV": " (a crash in native code)"}


class JobProcessDied(RuntimeError):
    """A job's process ended without handing back a result."""


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` while a job's process starts: a spawned process inherits it."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class _Running:
    idx: int
    overrides: Sequence[str]
    slot: int
    process: Any
    conn: Any
    message: bytes | None = None
    open: bool = True

    def receive(self) -> None:
        """The job's one message, or the end of the pipe where its process died first."""
        try:
            self.message = self.conn.recv_bytes()
        except (EOFError, OSError):
            pass
        self.open = False
        self.conn.close()


class DevicesLauncher(Launcher):
    def __init__(
        self, n_jobs: int | None = None, devices: Any = None, devices_per_job: int = 1, cpus_per_job: int | None = None
    ) -> None:
        self.settings = {
            "n_jobs": n_jobs,
            "devices": devices,
            "devices_per_job": devices_per_job,
            "cpus_per_job": cpus_per_job,
        }
        self.slots: list[Slot] = []
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.slots = plan_slots(**self.settings, gpus=visible_gpus, cores=usable_cores())

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import cloudpickle
        from hydra.core.singleton import Singleton

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(
            "devices launcher: %d job(s), %d at a time, in %s",
            len(job_overrides),
            len(self.slots),
            self.config.hydra.sweep.dir,
        )
        for i, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))

        context = multiprocessing.get_context("spawn")
        task = job_side.sendable_task(self.task_function)
        shared = cloudpickle.dumps((self.hydra_context, self.config, task, Singleton.get_state()))
        pending = deque(enumerate(job_overrides, start=initial_job_idx))
        free = deque(range(len(self.slots)))
        running: list[_Running] = []
        results: dict[int, JobReturn] = {}
        failure: BaseException | None = None
        try:
            while running or (pending and failure is None):
                while pending and free and failure is None:
                    running.append(self._start(context, shared, *pending.popleft(), free.popleft()))
                ready = wait([job.conn for job in running if job.open] + [job.process.sentinel for job in running])
                for job in list(running):
                    if job.open and job.conn in ready:
                        job.receive()
                    if job.process.sentinel not in ready:
                        continue
                    job.process.join()
                    if job.open:
                        job.receive()
                    running.remove(job)
                    free.append(job.slot)
                    outcome = self._outcome(job)
                    if isinstance(outcome, JobReturn):
                        results[job.idx] = outcome
                    elif failure is None:
                        failure = outcome
        finally:
            for job in running:
                job.process.terminate()
                job.process.join()
        if failure is not None:
            raise failure
        return [results[initial_job_idx + i] for i in range(len(job_overrides))]

    def _start(self, context: Any, shared: bytes, idx: int, overrides: Sequence[str], slot: int) -> _Running:
        receiver, sender = context.Pipe(duplex=False)
        where = self.slots[slot].describe()
        process = context.Process(
            # looked up now: Hydra's plugin scan executes the module again, and pickle wants today's object
            target=job_side.run_in_slot,
            args=(shared, idx, list(overrides), self.slots[slot].cores, f"job {idx} runs on {where}", sender),
            name=f"hydra-job-{idx}",
        )
        with _environment(self.slots[slot].environment()):
            process.start()
        # the job's process holds the only sending end now: its death is the end of the pipe
        sender.close()
        log.info("#%d started on %s", idx, where)
        return _Running(idx, overrides, slot, process, receiver)

    def _outcome(self, job: _Running) -> JobReturn | BaseException:
        """The job's JobReturn, or the error that ends the sweep (one outside the task function)."""
        import cloudpickle

        if job.message is None:
            return self._died(job)
        kind, *body = cloudpickle.loads(job.message)
        if kind == "done":
            log.info("#%d ended", job.idx)
            return body[0]
        error, child_traceback = body
        log.error("job %d failed before its task ran:\n%s", job.idx, child_traceback)
        return error

    def _died(self, job: _Running) -> JobReturn:
        """A FAILED JobReturn for a job whose process ended without one, and the callbacks' job end
        (trials.csv's row) that the process did not reach."""
        assert self.config is not None and self.hydra_context is not None
        code = job.process.exitcode
        how = f"exited with status {code}"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            how = f"was killed by signal {name}{SIGNAL_HINTS.get(name, '')}"
        config = job_side.job_config(self.hydra_context, self.config, job.overrides, job.idx)
        output_dir = os.path.abspath(os.path.join(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir)))
        with read_write(config.hydra.runtime):
            config.hydra.runtime.output_dir = output_dir
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        error = JobProcessDied(f"job {job.idx}'s process {how} before it returned a result; its log is in {output_dir}")
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret = JobReturn(
            overrides=list(job.overrides),
            cfg=task_cfg,
            hydra_cfg=OmegaConf.create({"hydra": config.hydra}),
            working_dir=os.getcwd(),
            task_name=str(config.hydra.job.name),
            status=JobStatus.FAILED,
            _return_value=error,
        )
        self.hydra_context.callbacks.on_job_end(config=config, job_return=ret)
        return ret
