"""Which accelerators and CPU cores each concurrent job of a multirun gets: one slot per job running."""

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.errors import CompactHydraException

log = logging.getLogger(__name__)


class LauncherSettingError(CompactHydraException, ValueError):
    """A hydra.launcher setting that cannot work here; Hydra prints the message alone and exits 1."""


@dataclass(frozen=True)
class Slot:
    """The devices (CUDA_VISIBLE_DEVICES entries, none on CPU) and cores one running job owns."""

    devices: tuple[str, ...]
    cores: tuple[int, ...]

    def environment(self) -> dict[str, str]:
        """What the job's process must find in its environment before torch loads."""
        threads = str(len(self.cores))
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.devices)
        return env

    def describe(self) -> str:
        cores = f"core{'s' if len(self.cores) > 1 else ''} {core_ranges(self.cores)}"
        where = f"devices {','.join(self.devices)} and {cores}" if self.devices else f"the CPU, {cores}"
        return f"{where} (OMP_NUM_THREADS={len(self.cores)})"


def core_ranges(cores: Sequence[int]) -> str:
    """0,1,2,3,6 -> '0-3,6'."""
    runs: list[list[int]] = []
    for core in sorted(cores):
        if runs and core == runs[-1][-1] + 1:
            runs[-1].append(core)
        else:
            runs.append([core])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, without initialising CUDA here: the jobs' processes must be
    the first to do that, with their own CUDA_VISIBLE_DEVICES."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    # counted through NVML where it is available, which leaves CUDA uninitialised
    return [str(i) for i in range(torch.cuda.device_count())]


def usable_cores() -> list[int]:
    """The cores this process's affinity allows (all of them where the OS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _count(key: str, value: Any, allow_null: bool = True) -> int | None:
    if value is None and allow_null:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        null = " (or null)" if allow_null else ""
        raise LauncherSettingError(f"hydra.launcher.{key}={value}: give a whole number of 1 or more{null}")
    return value


def plan_slots(
    n_jobs: Any,
    devices: Any,
    devices_per_job: Any,
    cpus_per_job: Any,
    gpus: Callable[[], Sequence[str]],
    cores: Sequence[int],
) -> list[Slot]:
    """One slot per concurrent job: disjoint blocks of `devices_per_job` devices (from `devices`, or
    `gpus()` when it is null) and of `cpus_per_job` cores (null: `cores` split evenly). The settings
    are checked before `gpus()` runs, as it may import torch."""
    n_jobs = _count("n_jobs", n_jobs)
    per_job = _count("devices_per_job", devices_per_job, allow_null=False)
    cpus = _count("cpus_per_job", cpus_per_job)
    if cpus is not None and cpus > len(cores):
        raise LauncherSettingError(
            f"hydra.launcher.cpus_per_job={cpus}: more than the {len(cores)} cores this process may use "
            f"({core_ranges(cores)}); give 1 to {len(cores)}"
        )
    if devices is None:
        chosen = [str(d) for d in gpus()]
    elif isinstance(devices, Sequence) and not isinstance(devices, str) and devices:
        chosen = [str(d) for d in devices]
    else:
        raise LauncherSettingError(
            f"hydra.launcher.devices={devices}: give a list of GPU ids, as CUDA_VISIBLE_DEVICES takes them "
            "(e.g. [0,1,2,3]), or null for the GPUs present"
        )
    if len(set(chosen)) != len(chosen):
        raise LauncherSettingError(f"hydra.launcher.devices={chosen}: each device may be listed once")

    blocks: list[tuple[str, ...]] = []
    if chosen:
        if per_job > len(chosen):
            raise LauncherSettingError(
                f"hydra.launcher.devices_per_job={per_job}: more than the {len(chosen)} devices "
                f"({','.join(chosen)}); give 1 to {len(chosen)}, or list more in hydra.launcher.devices"
            )
        blocks = [tuple(chosen[i : i + per_job]) for i in range(0, len(chosen) - per_job + 1, per_job)]
        if n_jobs is not None and n_jobs > len(blocks):
            raise LauncherSettingError(
                f"hydra.launcher.n_jobs={n_jobs}: {len(chosen)} devices make {len(blocks)} block(s) of "
                f"devices_per_job={per_job}; give n_jobs 1 to {len(blocks)} (or null), or a smaller devices_per_job"
            )
    if n_jobs is None:
        n_jobs = len(blocks) if blocks else (len(cores) // cpus if cpus else 1)

    if cpus is not None and cpus * n_jobs > len(cores):
        raise LauncherSettingError(
            f"hydra.launcher.cpus_per_job={cpus} for {n_jobs} concurrent jobs needs {cpus * n_jobs} cores; "
            f"this process may use {len(cores)} ({core_ranges(cores)}): give cpus_per_job up to "
            f"{len(cores) // n_jobs}, or fewer n_jobs"
        )
    if cpus is None:
        if n_jobs > len(cores):
            raise LauncherSettingError(
                f"hydra.launcher.n_jobs={n_jobs}: more concurrent jobs than the {len(cores)} cores this process "
                f"may use ({core_ranges(cores)}), and each job gets cores of its own; give n_jobs 1 to {len(cores)}"
            )
        cpus = len(cores) // n_jobs

    used = {d for block in blocks[:n_jobs] for d in block}
    if unused := [d for d in chosen if d not in used]:
        log.warning("devices launcher: devices %s are left unused", ",".join(unused))
    return [
        Slot(devices=blocks[i] if blocks else (), cores=tuple(cores[i * cpus : (i + 1) * cpus])) for i in range(n_jobs)
    ]
