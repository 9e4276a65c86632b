"""Where the configs live, the resolvers they use, and checks Hydra does not make itself."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from litforge.utils.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# An installed copy (`pip install .`) carries conf/ inside the package; a clone (`pip install -e .`,
# src/ on the path) has none there and reads the clone's own conf/, so edits there apply at once.
SOURCE_CHECKOUT: Path | None = None if (PACKAGE_DIR / "conf").is_dir() else PACKAGE_DIR.parents[1]
CONFIG_DIR = SOURCE_CHECKOUT / "conf" if SOURCE_CHECKOUT else PACKAGE_DIR / "conf"


def project_root() -> Path:
    """Where runs write (`paths.root_dir`): the clone, or for an installed copy the working directory."""
    return SOURCE_CHECKOUT or Path.cwd()


# the tree whose git commit a run records
PROJECT_ROOT = project_root()

if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))

# the group choices that say what a run trains, in this order, for its default tags
TAG_GROUPS = ("data", "model", "model/net", "model/backbone")


def run_tags() -> ListConfig:
    """The run's data, model and net/backbone choices (`tags: ${run_tags:}`); none outside a Hydra run.

    A ListConfig, not a list: `--cfg job --resolve` resolves in place, which takes only configs."""
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return OmegaConf.create([str(choices[group]) for group in TAG_GROUPS if choices.get(group)])


if not OmegaConf.has_resolver("run_tags"):
    OmegaConf.register_new_resolver("run_tags", run_tags)


def _kind(value: Any) -> str | None:
    """A coarse type for comparing a CLI value with the value it replaces; None: anything goes."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return None


def value_overrides(overrides: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Split CLI overrides into group choices (kept as they are) and `key=value` settings."""
    groups, values = [], []
    for line in overrides:
        key, sep, _ = line.partition("=")
        plain = key.lstrip("+~")
        if not sep or key != plain or plain.startswith("hydra") or "/" in plain or "@" in plain:
            groups.append(line)
        elif (CONFIG_DIR / plain.replace(".", "/")).is_dir():
            groups.append(line)
        else:
            values.append((plain, line))
    return groups, values


# keys that take one name or a list of names (a sweep over several objectives)
ONE_OR_MANY = {"optimized_metric"}

# What the arguments of classes built from configs accept, in `_kind` names (null always passes):
# the default's type alone would refuse `trainer.devices=auto` (default 1) or `trainer.precision=16`
# (default "32-true"). Written out so that checking a command line imports no Lightning;
# tests/test_trainer_cli.py compares it with the installed Trainer's annotations.
ACCEPTED_KINDS: dict[str, dict[str, str]] = {
    "lightning.pytorch.Trainer": {
        "default_root_dir": "string",
        "accelerator": "string",
        "strategy": "mapping string",
        "devices": "list number string",
        "num_nodes": "number",
        "precision": "number string",
        "fast_dev_run": "bool number",
        "max_epochs": "number",
        "min_epochs": "number",
        "max_steps": "number",
        "min_steps": "number",
        "max_time": "mapping string",
        "limit_train_batches": "number",
        "limit_val_batches": "number",
        "limit_test_batches": "number",
        "limit_predict_batches": "number",
        "overfit_batches": "number",
        "val_check_interval": "mapping number string",
        "check_val_every_n_epoch": "number",
        "num_sanity_val_steps": "number",
        "log_every_n_steps": "number",
        "enable_checkpointing": "bool",
        "enable_progress_bar": "bool",
        "enable_model_summary": "bool",
        "accumulate_grad_batches": "number",
        "gradient_clip_val": "number",
        "gradient_clip_algorithm": "string",
        "deterministic": "bool string",
        "benchmark": "bool",
        "inference_mode": "bool",
        "use_distributed_sampler": "bool",
        "profiler": "string",
        "detect_anomaly": "bool",
        "barebones": "bool",
        "sync_batchnorm": "bool",
        "reload_dataloaders_every_n_epochs": "number",
        "enable_autolog_hparams": "bool",
        "model_registry": "string",
    },
}


def _accepted(cfg: DictConfig, key: str, default: Any) -> frozenset[str]:
    """The kinds `key` takes: from the table when its parent builds a known class, else the default's."""
    parent, _, name = key.rpartition(".")
    target = OmegaConf.select(cfg, f"{parent}._target_", throw_on_missing=False) if parent else None
    accepted = ACCEPTED_KINDS.get(str(target), {})
    if name in accepted:
        return frozenset(accepted[name].split())
    kind = _kind(default)
    return frozenset([kind] if kind else [])


def check_override_types(cfg: DictConfig, overrides: list[str], baseline: DictConfig) -> None:
    """Refuse `key=value` overrides whose value is of a kind the key does not take.

    `baseline` is the config composed with the same group choices but none of the values,
    so `trainer.max_epochs=ten` is caught here, in a second, not deep inside Lightning.
    """
    for key, line in value_overrides(overrides)[1]:
        before = OmegaConf.select(baseline, key, throw_on_missing=False)
        after = OmegaConf.select(cfg, key, throw_on_missing=False)
        if OmegaConf.is_config(before):
            before = OmegaConf.to_container(before)
        if OmegaConf.is_config(after):
            after = OmegaConf.to_container(after)
        want, got = _accepted(cfg, key, before), _kind(after)
        if key in ONE_OR_MANY and "string" in want and got == "list" and all(isinstance(v, str) for v in after):
            continue
        if want and got and got not in want:
            *others, last = sorted(want)
            kinds = f"{', '.join(others)} or {last}" if others else last
            example = f", e.g. {key}={before!r}" if _kind(before) in want else ""
            raise UserError(
                f"override '{line}': {key} expects a {kinds} (its default is {before!r}), "
                f"got the {got} {after!r}. Give a {kinds}{example}."
            )


def require_file(path: str | Path | None, what: str, key: str) -> Path:
    """The path as a Path if it is an existing file, else a UserError naming the config key."""
    if path in (None, "", "???"):
        raise UserError(f"{key} is not set: give the {what}, e.g. {key}=/path/to/file.")
    resolved = Path(str(path)).expanduser()
    if not resolved.is_file():
        hint = " (it is a directory)" if resolved.is_dir() else ""
        raise UserError(f"{key}={path}: no such {what}{hint}. Give the path of an existing file.")
    return resolved


def config_help(command: str) -> str:
    """`--help`: the config groups and their options, read from conf/ directly.

    Hydra's own help builds a config repository per group (over a hundred with the sweeper and
    launcher plugins) and takes seconds; this answers at once. `--hydra-help` is Hydra's.
    """
    groups: dict[str, list[str]] = {}
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        parts = path.relative_to(CONFIG_DIR).parts
        if len(parts) > 1 and parts[0] not in ("hydra", "local"):
            groups.setdefault("/".join(parts[:-1]), []).append(path.stem)
    lines = [
        f"{command} is powered by Hydra.",
        "",
        "== Configuration groups ==",
        "Compose your configuration from those groups (group=option)",
        "",
        *(f"{group}: {', '.join(options)}" for group, options in sorted(groups.items())),
        "",
        "== Overrides ==",
        "Override any key (foo.bar=value), add one (+foo.bar=value), remove one (~foo.bar).",
        f"The composed config: python -m litforge.{command} --cfg job [overrides]",
        f"Hydra's own options (multirun, launchers, sweepers): python -m litforge.{command} --hydra-help",
    ]
    return "\n".join(lines)
