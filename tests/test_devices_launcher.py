"""hydra/launcher=devices: parallel jobs in fresh processes, each with its own devices and cores.

The sweeps run as subprocesses, as users start them: the launcher starts a process per job, and
the jobs' environments are what the tests check. A tiny Hydra app reports what its job got (no GPU
needed: CUDA_VISIBLE_DEVICES is only checked); the digits sweep runs litforge itself.
"""

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from litforge.utils.config import CONFIG_DIR
from tests.helpers import QUIET, check_ok, run_cli
from tests.test_sweeps import configs_by_job

CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cores = pytest.mark.skipif(len(CORES) < 2, reason="needs 2 cores to give 2 jobs one each")

APP = """
import ctypes, json, os, signal, sys, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path=".", config_name="app")
def main(cfg):
    start = time.time()
    if cfg.crash == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.crash == "segfault":
        ctypes.string_at(0)
    if cfg.crash == "raise":
        raise RuntimeError("this job raises")
    time.sleep(cfg.sleep)
    seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    seen.update(cores=sorted(os.sched_getaffinity(0)), start=start, end=time.time(), pid=os.getpid())
    Path(HydraConfig.get().runtime.output_dir, "seen.json").write_text(json.dumps(seen))
    return float(cfg.x)


if __name__ == "__main__":
    main()
    from litforge.utils.sweep import exit_if_jobs_failed

    exit_if_jobs_failed()
"""

APP_CONFIG = """
defaults:
  - override hydra/launcher: devices
  - _self_
x: 0
sleep: 1.5
crash: none
hydra:
  searchpath: [file://{conf}]
  sweep:
    dir: {out}
    subdir: ${{hydra.job.num}}
  callbacks:
    sweep_results:
      _target_: litforge.utils.sweep.SweepResults
"""


def run_app(tmp_path: Path, overrides: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    sweep = tmp_path / "sweep"
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "app.yaml").write_text(APP_CONFIG.format(conf=CONFIG_DIR, out=sweep))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), "-m", *overrides],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    return proc, sweep


def trials(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@needs_two_cores
def test_concurrent_jobs_get_disjoint_device_blocks_and_cores_and_overlap(tmp_path: Path) -> None:
    overrides = [
        "x=1,2,3",
        "hydra.launcher.devices=[0,1,2,3]",
        "hydra.launcher.devices_per_job=2",
        "hydra.launcher.cpus_per_job=1",
    ]
    proc, sweep = run_app(tmp_path, overrides)
    check_ok(proc)
    seen = [json.loads((sweep / str(job) / "seen.json").read_text()) for job in range(3)]
    first, second, third = seen
    assert {first["CUDA_VISIBLE_DEVICES"], second["CUDA_VISIBLE_DEVICES"]} == {"0,1", "2,3"}
    assert len(first["cores"]) == len(second["cores"]) == 1 and first["cores"] != second["cores"]
    assert all(s["OMP_NUM_THREADS"] == s["MKL_NUM_THREADS"] == "1" for s in seen)
    assert len({s["pid"] for s in seen}) == 3, "each job runs in a fresh process"
    assert first["start"] < second["end"] and second["start"] < first["end"], "the two jobs did not overlap"
    # two slots: the third job runs in the one the first job to end gave back
    slots = [(s["CUDA_VISIBLE_DEVICES"], s["cores"]) for s in seen]
    assert slots[2] in slots[:2]
    assert third["start"] > min(first["end"], second["end"])
    for job, s in enumerate(seen):
        line = f"job {job} runs on devices {s['CUDA_VISIBLE_DEVICES']} and core {s['cores'][0]} (OMP_NUM_THREADS=1)"
        assert line in (sweep / str(job) / "app.log").read_text(), "each job's own log says what it got"
    assert [row["status"] for row in trials(sweep)] == ["COMPLETED"] * 3


@needs_two_cores
def test_a_killed_or_crashing_job_is_a_failed_row_and_the_sweep_ends(tmp_path: Path) -> None:
    proc, sweep = run_app(tmp_path, ["crash=kill,segfault,raise,none", "hydra.launcher.cpus_per_job=1"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (
        "Error: 3 of 4 jobs of the sweep failed; the first, job 0 (crash=kill): "
        "JobProcessDied: job 0's process was killed by signal SIGKILL"
    ) in proc.stderr
    rows = trials(sweep)
    assert [row["status"] for row in rows] == ["FAILED", "FAILED", "FAILED", "COMPLETED"]
    assert "job 0's process was killed by signal SIGKILL" in rows[0]["error"]
    assert str(sweep / "0") in rows[0]["error"], "the message says where the job's log is"
    assert "job 1's process was killed by signal SIGSEGV" in rows[1]["error"]
    assert rows[2]["error"] == "RuntimeError: this job raises"
    assert float(rows[3]["value"]) == 0.0


TINY = [
    *QUIET,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.model_summary=null",
]
JOB_LINE = re.compile(r"^\[([\d\- :,]+)\].* - job (\d+) runs on (?:devices \S+ and |the CPU, )core (\d+) ", re.M)
STAMP = re.compile(r"^\[([\d\- :,]+)\]", re.M)


def log_span(text: str) -> tuple[datetime, datetime]:
    stamps = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in STAMP.findall(text)]
    return stamps[0], stamps[-1]


@needs_two_cores
def test_a_digits_sweep_trains_two_jobs_at_once_on_a_core_each(tmp_path: Path) -> None:
    overrides = ["-m", *TINY, "model.optimizer.lr=0.001,0.002", "hydra/launcher=devices"]
    overrides.append("hydra.launcher.cpus_per_job=1")
    proc = run_cli("litforge.train", overrides, tmp_path)
    check_ok(proc)
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    logs = [(sweep / job / "train.log").read_text() for job in ("0", "1")]
    cores = []
    for job, text in enumerate(logs):
        ((_, number, core),) = JOB_LINE.findall(text)
        assert int(number) == job
        cores.append(core)
    assert cores[0] != cores[1], "the two jobs shared a core"
    (start0, end0), (start1, end1) = log_span(logs[0]), log_span(logs[1])
    assert start0 < end1 and start1 < end0, "the two jobs did not train at the same time"
    for row in trials(sweep):
        assert row["status"] == "COMPLETED"
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert float(row["value"]) == metrics["val/acc"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["hydra.launcher.devices=[0,1,2,3]", "hydra.launcher.devices_per_job=8"],
            "hydra.launcher.devices_per_job=8: more than the 4 devices (0,1,2,3); give 1 to 4",
        ),
        (["hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: give a whole number of 1 or more"),
        (
            ["hydra.launcher.devices=[0,1,2,3]", "hydra.launcher.devices_per_job=2", "hydra.launcher.n_jobs=3"],
            "hydra.launcher.n_jobs=3: 4 devices make 2 block(s) of devices_per_job=2; give n_jobs 1 to 2",
        ),
        (
            [f"hydra.launcher.cpus_per_job={len(CORES) + 1}"],
            f"hydra.launcher.cpus_per_job={len(CORES) + 1}: more than the {len(CORES)} cores this process may use",
        ),
        (
            ["hydra.launcher.devices=[0,1]", f"hydra.launcher.cpus_per_job={len(CORES)}"],
            f"hydra.launcher.cpus_per_job={len(CORES)} for 2 concurrent jobs needs {2 * len(CORES)} cores",
        ),
    ],
    ids=["devices_per_job", "n_jobs", "n_jobs-for-blocks", "cpus_per_job", "cpus_per_job-for-n_jobs"],
)
def test_a_bad_launcher_setting_exits_naming_the_key_and_what_is_valid(
    tmp_path: Path, settings: list[str], message: str
) -> None:
    proc = run_cli("litforge.train", ["-m", *QUIET, "seed=1,2", "hydra/launcher=devices", *settings], tmp_path)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not list(tmp_path.rglob("*.log")), "no job started"


@needs_two_cores
@pytest.mark.slow
def test_ddp_ranks_of_each_job_stay_in_its_block(tmp_path: Path) -> None:
    # the extra ranks are subprocesses of the job's process: its environment and cores are theirs
    overrides = ["-m", *TINY, "trainer=ddp_sim", "model.optimizer.lr=0.001,0.002", "hydra/launcher=devices"]
    proc = run_cli("litforge.train", [*overrides, "hydra.launcher.cpus_per_job=1"], tmp_path, timeout=300)
    check_ok(proc)
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    jobs = configs_by_job(proc.stdout + proc.stderr)
    assert sorted(jobs) == [str(sweep / "0"), str(sweep / "1")], "ranks wrote outside their job's folder"
    for ranks in jobs.values():
        assert set(ranks) == {0, 1} and ranks[0] == ranks[1] and len(ranks[0]) == 1
    assert [row["status"] for row in trials(sweep)] == ["COMPLETED", "COMPLETED"]
