"""Rich output: the composed config as a tree, final metrics as a table."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

FIRST_FIELDS = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras")


def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    tree = Tree("config", guide_style="dim")
    fields = [f for f in FIRST_FIELDS if f in cfg] + [f for f in cfg if f not in FIRST_FIELDS]
    for field in fields:
        branch = tree.add(str(field), style="bold")
        value = cfg[field]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(text.rstrip())
    Console().print(tree)
    if save_to is not None:
        with open(save_to, "w") as f:
            Console(file=f, width=120).print(tree)


def print_metrics_table(title: str, metrics: Mapping[str, Any], keys: Sequence[str] | None = None) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys or sorted(metrics):
        value = metrics[key]
        value = value.item() if hasattr(value, "item") else value
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
