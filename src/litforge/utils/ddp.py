"""DDP inside Hydra jobs: every rank runs the job's own composed config in the job's directory.

Lightning starts ranks 1..N-1 by re-running the command line. Inside a Hydra multirun that
line is the whole sweep, so the ranks would train other hyperparameters and write other
folders. Here they start from the job's saved config instead, in RUN mode.
"""

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litforge.utils.compat import set_hydra_subprocess_cmd
from litforge.utils.config import run_tags

# What Lightning's launcher writes into os.environ of the launching process.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_subprocess_cmd(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that starts rank `local_rank` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    config_dir = output_dir / (hydra_cfg.output_subdir or ".hydra")
    if not (config_dir / "config.yaml").is_file():
        raise RuntimeError(f"{config_dir}/config.yaml is missing: DDP ranks start from the job's saved config")
    command = [
        sys.executable,
        "-m",
        "litforge.train",
        f"--config-path={config_dir}",
        "--config-name=config",
        f"hydra.run.dir={output_dir}",
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_rank_{local_rank}",
        # only rank 0 writes the run's log file
        "hydra/job_logging=stdout",
    ]
    if OmegaConf.is_interpolation(OmegaConf.load(config_dir / "config.yaml"), "tags"):
        # the default tags are the job's group choices, which a rank composed from the saved config has none of
        command.append(f"tags=[{','.join(run_tags())}]")
    return command, os.getcwd()


def save_job_config(cfg: DictConfig) -> None:
    """Keep .hydra/config.yaml even where hydra.output_subdir=null, for the other ranks."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    config_dir = Path(hydra_cfg.runtime.output_dir) / (hydra_cfg.output_subdir or ".hydra")
    if not (config_dir / "config.yaml").is_file():
        config_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, config_dir / "config.yaml")


@contextmanager
def ddp_ranks_follow_the_job(cfg: DictConfig) -> Iterator[None]:
    """Start DDP ranks from the job's config, and leave no launcher state to the next job."""
    before = {k: os.environ.get(k) for k in LAUNCHER_ENV}
    if "LOCAL_RANK" not in os.environ:
        save_job_config(cfg)
    original = set_hydra_subprocess_cmd(job_subprocess_cmd)
    try:
        yield
    finally:
        set_hydra_subprocess_cmd(original)
        import torch.distributed

        # the next job of a sweep must form its own process group with its own ranks
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        # a next job in this process would otherwise think its ranks were started externally
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
