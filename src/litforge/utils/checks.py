"""Values that torch, Lightning or a data module would refuse only once the run is under way,
checked with the config before anything heavy is imported: a wrong value costs a second, not
the data preparation and an epoch."""

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from litforge.tasks.registry import task_metrics
from litforge.utils.checkpoint import trusted_prefixes
from litforge.utils.errors import UserError

# lightning.fabric.connector._PRECISION_INPUT's values, and the accelerator names the Trainer takes
# (its registry's and "auto", "gpu"): tests/test_bad_values.py compares both with the installed Lightning
NAMED_PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
NAMED_PRECISIONS += ("transformer-engine", "transformer-engine-float16")
PRECISIONS: tuple[int | str, ...] = (*NAMED_PRECISIONS, "32", "16", "bf16", "64", 32, 16, 64)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# accelerators whose Lightning class needs a package that torch does not bring
ACCELERATOR_PACKAGES = {"tpu": "torch_xla"}


@dataclass(frozen=True)
class Rule:
    accepts: Callable[[Any], bool]
    valid: str  # what to give instead, for the message


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _probability(value: Any) -> bool:
    # 1 is torch's limit too, but it drops every activation: nothing could learn
    return _number(value) and 0 <= value < 1


def _limit(value: Any) -> bool:
    return _whole(value) and (value >= 1 or value == -1)


def _class_weights(value: Any) -> bool:
    if value is None or value == "balanced":
        return True
    return isinstance(value, ListConfig | list) and len(value) > 0 and all(_number(w) and w > 0 for w in value)


NO_LIMIT = "-1 for no limit"
RULES: dict[str, Rule] = {
    "model.optimizer.lr": Rule(lambda v: _number(v) and v > 0, "a positive learning rate, e.g. 0.001"),
    "model.optimizer.weight_decay": Rule(lambda v: _number(v) and v >= 0, "a number of at least 0 (0: no decay)"),
    "model.mode": Rule(
        lambda v: v in ("min", "max"), "min or max (whether a lower or a higher model.monitor is better)"
    ),
    "model.net.dropout": Rule(_probability, "a dropout probability from 0 up to, not including, 1"),
    "model.backbone.config.*dropout*": Rule(
        lambda v: v is None or _probability(v), "a dropout probability from 0 up to, not including, 1, or null"
    ),
    "model.class_weights": Rule(
        _class_weights, "null, balanced, or one positive weight per class in class order, e.g. [1,3]"
    ),
    "data.categorical_encoding": Rule(
        lambda v: v in ("onehot", "embedding"), "onehot (one input per category) or embedding (learned vectors)"
    ),
    "data.batch_size": Rule(lambda v: _whole(v) and v >= 1, "a batch size of at least 1 (a whole number, e.g. 32)"),
    "trainer.max_epochs": Rule(
        lambda v: v is None or _limit(v),
        f"a whole number of at least 1, or {NO_LIMIT} (trainer.max_steps, trainer.max_time or early stopping "
        "then ends training); to test a checkpoint without training: "
        "python -m litforge.eval ckpt_path=<file.ckpt>",
    ),
    "trainer.max_steps": Rule(
        _limit, f"a whole number of at least 1, or {NO_LIMIT} (trainer.max_epochs then ends training)"
    ),
    "trainer.precision": Rule(
        lambda v: v is None or (type(v) in (int, str) and v in PRECISIONS),
        f"one of {', '.join(NAMED_PRECISIONS)}, or the short 32, 16, bf16, 64",
    ),
    "trainer.accelerator": Rule(
        lambda v: not isinstance(v, str) or v in ACCELERATORS, f"one of {', '.join(ACCELERATORS)}"
    ),
}
_ABSENT = object()


def _shown(value: Any) -> str:
    """The value as it is written on the command line."""
    return "null" if value is None else str(value)


def _matches(cfg: DictConfig, pattern: str) -> Iterator[tuple[str, Any]]:
    """(key, value) of each key the pattern names: the key itself, or the keys its last part matches."""
    parent, _, name = pattern.rpartition(".")
    if "*" not in name:
        value = OmegaConf.select(cfg, pattern, default=_ABSENT, throw_on_missing=False)
        if value is not _ABSENT:
            yield pattern, value
        return
    node = OmegaConf.select(cfg, parent, default=None, throw_on_missing=False)
    if isinstance(node, DictConfig):
        for key in node:
            if fnmatch(str(key), name):
                yield f"{parent}.{key}", node.get(key)


def check_monitors(cfg: DictConfig) -> None:
    """model.monitor, and any callback's or scheduler's own monitor, must be a metric the task logs:
    otherwise checkpointing or early stopping fails after the first epoch. A task of the user's own
    is checked against its `metric_names`; one that declares none is left to Lightning's message."""
    logged = task_metrics(str(OmegaConf.select(cfg, "model._target_", default="")))
    if logged is None:
        return
    keys = ["model.monitor", "model.scheduler.monitor"]
    keys += [
        f"callbacks.{name}.monitor"
        for name, entry in (cfg.get("callbacks") or {}).items()
        if isinstance(entry, DictConfig)
    ]
    for key in keys:
        monitor = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if monitor is not None and monitor not in logged:
            task = str(cfg.model._target_).rsplit(".", 1)[-1]
            raise UserError(
                f"{key}={monitor}: {task} logs no such metric. Give one of its validation metrics: "
                f"{', '.join(logged)} (and model.mode=min for a loss, max for a score)."
            )


def check_accelerator_package(cfg: DictConfig) -> None:
    """An accelerator whose package is missing fails in Lightning with an import error, after the data is read."""
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=None)
    package = ACCELERATOR_PACKAGES.get(str(accelerator))
    if package and importlib.util.find_spec(package) is None:
        others = ", ".join(a for a in ACCELERATORS if a not in ACCELERATOR_PACKAGES)
        raise UserError(
            f"trainer.accelerator={accelerator} needs the `{package}` package, which is not installed here. "
            f"Give one of {others} (trainer=cpu, trainer=gpu, trainer=default)."
        )


def check_streaming(cfg: DictConfig) -> None:
    """A streamed training set has no length: only trainer.max_steps ends training, and validation
    comes every trainer.val_check_interval steps (Lightning refuses a fraction of an endless epoch)."""
    if OmegaConf.select(cfg, "data.streaming", default=False) is not True:
        return
    steps = OmegaConf.select(cfg, "trainer.max_steps", default=None)
    if steps is None or steps == -1:
        raise UserError(
            f"data.streaming=true with trainer.max_steps={_shown(steps)}: a stream has no length, so no epoch "
            "ever ends and trainer.max_epochs cannot stop training. Give trainer.max_steps=<steps> (e.g. 10000), "
            "and trainer.val_check_interval=<steps> to validate every that many steps."
        )
    interval = OmegaConf.select(cfg, "trainer.val_check_interval", default=None)
    if interval is not None and not _whole(interval) and interval != 1.0:
        raise UserError(
            f"trainer.val_check_interval={interval}: with data.streaming=true an epoch has no length, so a fraction "
            "of one means nothing. Give a number of training steps, e.g. trainer.val_check_interval=1000."
        )


def check_values(cfg: DictConfig) -> None:
    """Refuse the first value no run could use (see RULES), a monitored metric the task does not
    log, an accelerator whose package is missing, and `trusted_modules` that would trust the standard
    library or a whole library; keys the config does not have are skipped."""
    for pattern, rule in RULES.items():
        for key, value in _matches(cfg, pattern):
            if not rule.accepts(value):
                raise UserError(f"{key}={_shown(value)}: give {rule.valid}.")
    check_monitors(cfg)
    check_streaming(cfg)
    check_accelerator_package(cfg)
    trusted_prefixes(cfg.get("trusted_modules"))
