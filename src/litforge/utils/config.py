"""Where the configs live, the resolvers they use, and checks Hydra does not make itself."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litforge.utils.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = PROJECT_ROOT / "conf"

if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


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


def check_override_types(cfg: DictConfig, overrides: list[str], baseline: DictConfig) -> None:
    """Refuse `key=value` overrides whose value has another type than the config's own value.

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
        want, got = _kind(before), _kind(after)
        if key in ONE_OR_MANY and want == "string" and got == "list" and all(isinstance(v, str) for v in after):
            continue
        if want and got and want != got:
            raise UserError(
                f"override '{line}': {key} expects a {want} (its default is {before!r}), "
                f"got the {got} {after!r}. Give a {want}, e.g. {key}={before!r}."
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
