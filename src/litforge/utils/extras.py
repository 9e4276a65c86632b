"""Optional start-of-run utilities chosen by the `extras` config group."""

import logging
import warnings
from pathlib import Path

from omegaconf import DictConfig

from litforge.utils.rich_utils import print_config_tree

log = logging.getLogger(__name__)


def apply_extras(cfg: DictConfig) -> None:
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("enforce_tags") and not cfg.get("tags"):
        log.warning("this run has no tags: add some with tags='[baseline,lr-sweep]' to find it later")
    if extras.get("print_config"):
        output_dir = Path(cfg.paths.output_dir)
        print_config_tree(cfg, save_to=output_dir / "config_tree.log" if output_dir.is_dir() else None)
