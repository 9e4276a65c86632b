"""conf/local/: one machine's own settings, gitignored, so no test or CI run ever reads them; their
two common mistakes get a clear answer here instead of a parser traceback or silence."""

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from litforge.utils.config import CONFIG_DIR
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

PACKAGE_LINE = "# @package _global_"


def _config_dirs(argv: Sequence[str]) -> list[Path]:
    """The folders Hydra reads configs from, in its order: `--config-dir`/`-cd`, then conf/."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config-dir", "-cd")
    known, _ = parser.parse_known_args(list(argv))
    return [*([Path(known.config_dir).expanduser()] if known.config_dir else []), CONFIG_DIR]


def check_local_yaml(argv: Sequence[str]) -> None:
    """Before Hydra composes: a local yaml that is not valid YAML, by its file, line and column."""
    import yaml

    for path in sorted(p for folder in _config_dirs(argv) for p in (folder / "local").glob("*.yaml")):
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8.") from err
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UserError(
                f"{where}: not valid YAML ({problem}). It is this machine's local config, which every run "
                f"reads: fix that line, or move the file out of {path.parent} to run without it."
            ) from err


def _local_file(choice: str, sources: Iterable[Any]) -> str:
    for source in sources:
        if source.schema == "file" and (Path(source.path) / "local" / f"{choice}.yaml").is_file():
            return str(Path(source.path) / "local" / f"{choice}.yaml")
    return f"conf/local/{choice}.yaml"


def warn_unplaced_local(cfg: DictConfig) -> None:
    """A local yaml without `# @package _global_` lands under `local.` and changes nothing."""
    from hydra.core.hydra_config import HydraConfig

    held = cfg.get("local")
    if not isinstance(held, DictConfig) or not held:
        return
    runtime = HydraConfig.get().runtime
    path = _local_file(runtime.choices.get("local") or "default", runtime.config_sources)
    log.warning(
        "%s has no `%s` first line, so its keys (%s) sit under `local.` and change nothing in this run "
        "(only ${local.<key>} interpolations read them). Make `%s` its first line to apply them.",
        path,
        PACKAGE_LINE,
        ", ".join(map(str, held)),
        PACKAGE_LINE,
    )
