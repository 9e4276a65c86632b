"""`resume=<run dir>`: continue a run from its last checkpoint, in its own directory, with its own choices.

A run's `.hydra/` is its record and is never rewritten. A resume re-composes the run's overrides
from conf/ with Hydra (the original command line plus every earlier resume's, later ones winning),
adds the new ones, and Hydra records what it composed in `.hydra/resumes/<stamp>/`, which the next
resume starts from. A resume that fails before it has written a checkpoint leaves no record.
A resume holds `<run dir>/.lock` while it runs, and keeps the run's own paths.log_dir.
"""

import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litforge.utils.checkpoint import find_targets, trusted_prefixes
from litforge.utils.config import CONFIG_DIR
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

RECORDS = Path(".hydra", "resumes")
# groups that change how a run is run and watched, not what it trains: these may change at resume
FREE_GROUPS = ("logger", "callbacks", "trainer", "extras", "hydra")
# Hydra settings that place a job (a sweep's job included); a resume places itself
PLACEMENT = ("hydra.mode", "hydra.run.", "hydra.sweep.", "hydra.output_subdir")
# flags that would give a resume another primary config or a sweep
REFUSED_FLAGS = ("-m", "--multirun", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")
# flags that only show what a resume would run: they need no lock on the run
SHOW_FLAGS = ("--cfg", "-c", "--info", "-i", "--resolve", "--package", "-p", "--shell-completion", "-sc")
LOCK = ".lock"
# the run's trackers (MLflow's local store, W&B's files) live under it: a resume keeps the run's own
OWN_KEYS = ("paths.log_dir",)
ABSENT = object()
# what a run's record may name as `_target_` when a resume rebuilds it
RECORDED_TARGET_PREFIXES = ("litforge.", "lightning.pytorch.", "torch.optim.", "hydra_plugins.litforge_")
# locks this process holds on its run directories: open until the process ends
_held: list[int] = []


@dataclass(frozen=True)
class Resume:
    """One `resume=<run dir>` attempt: the command line Hydra runs and the record it writes."""

    argv: list[str]
    record: Path
    checkpoint: Path

    @contextmanager
    def kept_if_it_counts(self) -> Iterator[None]:
        """A resume that fails before writing a checkpoint changed nothing, so its record goes too:
        the next resume starts from the state this one started from."""
        before = _file_state(self.checkpoint)
        try:
            yield
        except BaseException as err:
            failed = not isinstance(err, SystemExit) or err.code not in (0, None)
            if failed and _file_state(self.checkpoint) == before:
                shutil.rmtree(self.record, ignore_errors=True)
                if self.record.parent.is_dir() and not any(self.record.parent.iterdir()):
                    self.record.parent.rmdir()
            raise


def from_argv(argv: Sequence[str]) -> Resume | None:
    """The Hydra command line for `resume=<run dir> [overrides]`, or None without `resume=`."""
    given = [a for a in argv[1:] if a.startswith("resume=")]
    if not given:
        return None
    where = given[-1].partition("=")[2]
    run_dir = Path(where).expanduser().resolve()
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    base = latest_record(run_dir)
    for path, what in [(base / "config.yaml", "its saved config"), (checkpoint, "a last checkpoint")]:
        if not path.is_file():
            raise UserError(
                f"resume={where}: {path} is missing, so this is not a run directory with {what}. "
                "Give a directory under logs/train/runs/ that holds checkpoints/last.ckpt."
            )
    flags, lines = _split_flags([a for a in argv[1:] if not a.startswith("resume=")], where)
    lines = _without_own_keys(lines, base, where)
    if not any(flag.partition("=")[0] in SHOW_FLAGS for flag in flags):
        _lock(run_dir, where)
    record = run_dir / RECORDS / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    placement = [
        f"hydra.run.dir={quoted(str(run_dir))}",
        f"hydra.output_subdir={quoted(str(record.relative_to(run_dir)))}",
        f"ckpt_path={quoted(str(checkpoint))}",
    ]
    return Resume([argv[0], *flags, *_continued(base, lines, placement, where)], record, checkpoint)


def quoted(value: str) -> str:
    """`value` as a quoted string of Hydra's override grammar, which takes any character there (an
    unquoted path with `ü`, `=` or `[` is a syntax error): quotes escaped, and the backslashes before
    a quote or at the end doubled, as Hydra reads them."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def _lock(run_dir: Path, where: str) -> None:
    """Held until this process ends: a second resume of the run while one is running is refused,
    since both would train and log the same epochs into one directory."""
    import fcntl

    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        by = f"process {holder}" if holder.isdigit() else "another process"
        raise UserError(
            f"resume={where}: this run is being resumed by {by}, which holds the lock {run_dir / LOCK}. "
            "Two resumes of one run would train and log the same epochs twice: wait until it ends (or stop it), "
            "then resume again."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held.append(fd)


def _without_own_keys(lines: list[str], base: Path, where: str) -> list[str]:
    """The new overrides less those of the keys a run keeps (OWN_KEYS), with a warning where they
    named another value: a new paths.log_dir would look for the run's MLflow run in an empty store."""
    parsed = _parse(lines, where)
    own = [o for o in parsed if o.key_or_group in OWN_KEYS and not _is_group(o)]
    if not own:
        return lines
    recorded = OmegaConf.load(base / "config.yaml")
    for o in own:
        kept = OmegaConf.select(recorded, o.key_or_group, default=None, throw_on_resolution_failure=False)
        if not _same_path(o.value(), kept):
            log.warning(
                "resume=%s: `%s` is not used: a resumed run keeps its own %s=%s, under which its tracker "
                "stores (MLflow's local store, W&B's files) are",
                where,
                o.input_line,
                o.key_or_group,
                kept,
            )
    return [o.input_line for o in parsed if o not in own]


def _same_path(given: Any, kept: Any) -> bool:
    if not isinstance(given, str) or not isinstance(kept, str):
        return given == kept
    return Path(given).expanduser().resolve() == Path(kept).expanduser().resolve()


def _continued(base: Path, lines: list[str], placement: list[str], where: str) -> list[str]:
    """The primary config and overrides that continue the run from its record `base`: re-composed
    from conf/ where that gives the recorded config, else the recorded config itself."""
    given = _parse(lines, where)
    groups = [o for o in given if _is_group(o)]
    _check_groups(groups, where, _choices(base))
    # only this command line may trust more modules, never the record
    trusted = next((trusted_prefixes(o.value()) for o in given if o.key_or_group == "trusted_modules"), ())
    composed = _composable(base)
    if not isinstance(composed, str):
        name, history = composed
        _check_recorded_targets(_parse(history, where), base / "hydra.yaml", trusted)
        head = [] if name == "train" else [f"--config-name={name}"]
        return [*head, *merge(history, [*lines, *placement])]
    recorded = OmegaConf.to_container(OmegaConf.load(base / "config.yaml"), resolve=False)
    _refuse_foreign(find_targets(recorded, "config"), base / "config.yaml", trusted)
    if groups:
        raise UserError(
            f"resume={where}: `{groups[0].input_line}` chooses a config group, but this run's choices cannot "
            f"be re-composed from conf/: {composed}. Resume without it (key=value overrides apply to the "
            f"recorded config {base / 'config.yaml'}), or start a new run with it."
        )
    log.warning("resume=%s: %s; continuing from the recorded config %s", where, composed, base / "config.yaml")
    return [f"--config-path={base}", "--config-name=config", *lines, *placement]


def _check_recorded_targets(overrides: list[Override], where: Path, trusted: tuple[str, ...] = ()) -> None:
    """A recorded override naming a class (`x._target_=...`, or a mapping with one) may only name
    litforge's, Lightning's or a torch optimiser, or one under the command line's `trusted_modules`:
    Hydra would build it, its callbacks before any check."""
    for o in overrides:
        value = o.value() if o.type != OverrideType.DEL else None
        if o.key_or_group.rpartition(".")[2] == "_target_":
            _refuse_foreign([(o.key_or_group, value)], where, trusted)
        else:
            _refuse_foreign(find_targets(value, o.key_or_group), where, trusted)


def _refuse_foreign(targets: Iterable[tuple[str, Any]], where: Path, trusted: tuple[str, ...] = ()) -> None:
    allowed = RECORDED_TARGET_PREFIXES + tuple(f"{module}." for module in trusted)
    for key, target in targets:
        if not str(target).startswith(allowed):
            raise UserError(
                f"{where}: {key} is {target!r}, not a class of litforge, Lightning or torch.optim. A run "
                f"directory is data: at resume its record may only name classes under "
                f"{', '.join(p.rstrip('.') for p in RECORDED_TARGET_PREFIXES)}, or under the trusted_modules "
                f"this command line gives. Nothing was imported or run. If {str(target).rpartition('.')[0]} is "
                "your own code, resume with trusted_modules=[<its package>]; else start a new run."
            )


def latest_record(run_dir: Path) -> Path:
    """The folder of the run's newest record: the last resume's, else the run's own `.hydra`."""
    records = sorted(p for p in (run_dir / RECORDS).glob("*") if (p / "config.yaml").is_file())
    return records[-1] if records else run_dir / ".hydra"


def merge(history: Sequence[str], new: Sequence[str]) -> list[str]:
    """History then the new overrides, the new winning: earlier settings of a key that a new one sets
    are dropped, so `+key=...` or `~key` given both to the run and to its resume does not fail."""
    parser = OverridesParser.create()
    fresh = parser.parse_overrides(list(new))
    keys = {(o.key_or_group, o.package) for o in fresh}
    kept, dropped = [], {}
    for o in parser.parse_overrides(list(history)):
        key = (o.key_or_group, o.package)
        if key in keys:
            dropped.setdefault(key, set()).add(o.type)
        else:
            kept.append(o.input_line)
    for o in fresh:
        kept += _restated(o, dropped.get((o.key_or_group, o.package), set()))
    return kept


def _restated(o: Override, dropped: set[OverrideType]) -> list[str]:
    """A new override written so that it applies where the history's settings of its key are gone."""
    if not dropped:
        return [o.input_line]
    if o.type == OverrideType.DEL:
        # the key came from the history's `+key=`: without it there is nothing to delete
        return [] if OverrideType.ADD in dropped else [o.input_line]
    if _is_group(o):
        prefix = "+" if OverrideType.ADD in dropped else ""
    else:
        # `++` sets the key whether or not the primary config has it (the history may have added it)
        added = dropped & {OverrideType.ADD, OverrideType.FORCE_ADD}
        prefix = "++" if added or o.type != OverrideType.CHANGE else ""
    package = f"@{o.package}" if o.package is not None else ""
    return [f"{prefix}{o.key_or_group}{package}={o.input_line.partition('=')[2]}"]


def _split_flags(args: list[str], where: str) -> tuple[list[str], list[str]]:
    """Hydra's flags (`--cfg job`, `-c hydra`, ...) with their values, and the overrides."""
    flags, lines, previous = [], [], ""
    for arg in args:
        if arg.startswith("-"):
            if arg.partition("=")[0] in REFUSED_FLAGS:
                raise UserError(
                    f"resume={where}: `{arg}` cannot be used with resume, which continues one run with its own "
                    "config. Give overrides only (key=value, group=option)."
                )
            flags.append(arg)
        elif previous.startswith("-") and "=" not in previous and "=" not in arg and not arg.startswith("~"):
            flags.append(arg)
        else:
            lines.append(arg)
        previous = arg
    return flags, lines


def _parse(lines: list[str], where: str) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(lines)
    except HydraException as err:
        raise UserError(f"resume={where}: {err}") from err


def _is_group(o: Override) -> bool:
    key = o.key_or_group
    return o.package is not None or "/" in key or (CONFIG_DIR / key).is_dir()


def _choices(base: Path) -> dict[str, Any]:
    """The run's recorded group choices (Hydra's runtime.choices), empty where none were recorded."""
    path = base / "hydra.yaml"
    if not path.is_file():
        return {}
    return OmegaConf.to_container(OmegaConf.load(path).hydra.runtime.get("choices") or {}) or {}


def _check_groups(groups: list[Override], where: str, choices: dict[str, Any]) -> None:
    """Only choices that leave what was trained alone may change, and only to options conf/ has."""
    for o in groups:
        group = o.key_or_group
        if group.split("/")[0] not in FREE_GROUPS:
            raise UserError(
                f"resume={where}: `{o.input_line}` would change what this run trains, but the weights and "
                f"optimiser state in its last.ckpt belong to {group}={choices.get(group) or 'null'}. At resume only "
                f"the choices of {', '.join(FREE_GROUPS[:-1])} (and hydra/*) may change, and key=value overrides "
                f"(e.g. model.optimizer.lr=1e-4). To change {group}, start a new run."
            )
        # hydra/* options live in Hydra and its plugins as well as in conf/hydra
        options = [] if group.startswith("hydra/") else sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        value = o.value()
        if options and isinstance(value, str) and value not in options:
            raise UserError(
                f"resume={where}: `{o.input_line}`: conf/{group} has no option '{value}'; "
                f"the options are {', '.join(options)}."
            )


def _composable(base: Path) -> tuple[str, list[str]] | str:
    """The run's primary config and overrides when conf/ composes them into its recorded config,
    else why not (a record from before resumes were kept, or conf/ changed since)."""
    if not (base / "hydra.yaml").is_file():
        return f"{base} holds no hydra.yaml"
    hydra_cfg = OmegaConf.load(base / "hydra.yaml").hydra
    name = hydra_cfg.job.config_name
    if not (CONFIG_DIR / f"{name}.yaml").is_file():
        return f"its primary config '{name}' is not in {CONFIG_DIR}"
    overrides: Any = OmegaConf.to_container(hydra_cfg.overrides, resolve=False)
    history = [line for line in overrides["hydra"] if not line.startswith(PLACEMENT)] + overrides["task"]
    differences = _drift(name, history, base / "config.yaml")
    if differences:
        more = f" (and {len(differences) - 1} more differences)" if len(differences) > 1 else ""
        return f"conf/ has changed since it was recorded: {differences[0]}{more}"
    return name, history


def _drift(name: str, history: list[str], recorded: Path) -> list[str]:
    """Where conf/ today composes the run's overrides into something else than its recorded config."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            now = compose(name, overrides=history)
    except (HydraException, OmegaConfBaseException) as err:
        return [f"its overrides no longer compose ({str(err).splitlines()[0]})"]
    then, today = (OmegaConf.to_container(c, resolve=False) for c in (OmegaConf.load(recorded), now))
    # the checkpoint a resume continues from is set anew by every resume
    then.pop("ckpt_path", None)
    today.pop("ckpt_path", None)
    return _differences(then, today)


def _differences(then: Any, today: Any, key: str = "") -> list[str]:
    if isinstance(then, dict) and isinstance(today, dict):
        names = sorted(set(then) | set(today), key=str)
        return [d for k in names for d in _differences(then.get(k, ABSENT), today.get(k, ABSENT), f"{key}.{k}")]
    if then == today:
        return []
    if then is ABSENT:
        return [f"{key[1:]} is new in conf/"]
    if today is ABSENT:
        return [f"{key[1:]} is no longer in conf/"]
    return [f"{key[1:]} is {_short(today)} now, {_short(then)} in the record"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _file_state(path: Path) -> tuple[int, int] | None:
    """What changes when a file is rewritten (Lightning moves a new checkpoint into place)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns
