"""litforge's tasks and the data modules each trains on, by class path.

Read before torch or lightning are imported: a data/model pair that cannot work together is
refused while the config is checked, in a second, not after the data has been loaded.
"""

from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from litforge.utils.config import CONFIG_DIR
from litforge.utils.errors import UserError

TASK_DATA: dict[str, tuple[str, ...]] = {
    "litforge.tasks.image_classification.ImageClassificationModule": (
        "litforge.data.image.classification.ImageDataModule",
    ),
    "litforge.tasks.regression.RegressionModule": ("litforge.data.tabular.regression.TabularDataModule",),
    "litforge.tasks.text_classification.TextClassificationModule": (
        "litforge.data.text.classification.TextDataModule",
    ),
    "litforge.tasks.token_classification.TokenClassificationModule": (
        "litforge.data.text.token_classification.TokenDataModule",
    ),
    "litforge.tasks.masked_lm.MaskedLanguageModelingModule": ("litforge.data.text.masked_lm.MaskedLMDataModule",),
}
DATA_MODULES = frozenset(data for modules in TASK_DATA.values() for data in modules)
# the validation metrics each task logs, the names model.monitor may take; tests/test_bad_values.py
# trains each task and compares (the text classifier logs val/auroc only for two-label data)
CLASSIFICATION_METRICS = ("val/loss", "val/acc", "val/f1", "val/precision", "val/recall")
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "litforge.tasks.image_classification.ImageClassificationModule": CLASSIFICATION_METRICS,
    "litforge.tasks.regression.RegressionModule": ("val/loss", "val/mse", "val/rmse", "val/mae", "val/r2"),
    "litforge.tasks.text_classification.TextClassificationModule": (*CLASSIFICATION_METRICS, "val/auroc"),
    "litforge.tasks.token_classification.TokenClassificationModule": (
        "val/loss",
        "val/precision",
        "val/recall",
        "val/f1",
        "val/token_acc",
    ),
    "litforge.tasks.masked_lm.MaskedLanguageModelingModule": ("val/loss", "val/perplexity", "val/acc"),
}


def task_metrics(target: str) -> tuple[str, ...] | None:
    """The validation metrics a task logs: TASK_METRICS for litforge's tasks; for a task of the
    user's own, its class's `metric_names` (imported only then), None where it declares none."""
    if target in TASK_METRICS:
        return TASK_METRICS[target]
    module, _, name = target.rpartition(".")
    if not module or not name:
        return None
    import importlib

    try:
        declared = getattr(importlib.import_module(module), name).metric_names
    except Exception:
        return None  # a class that cannot be imported is reported when the task is built
    return tuple(declared) or None


def group_targets(group_dir: Path) -> dict[str, str]:
    """Each option of a config group (its yaml file's stem) and the `_target_` it builds."""
    targets = {}
    for path in sorted(group_dir.glob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        if target:
            targets[path.stem] = str(target)
    return targets


def fitting_models(data_target: str, model_options: dict[str, str]) -> list[str]:
    """The model options whose task trains on data built by `data_target`."""
    return [name for name, task in model_options.items() if data_target in TASK_DATA.get(task, ())]


def check_data_fits_model(cfg: DictConfig, choices: Mapping[str, str | None]) -> None:
    """Refuse a litforge data module paired with a litforge task that cannot train on it.

    `choices` are the group choices Hydra composed (data=..., model=...), for the message.
    A task or data module of the user's own (not in TASK_DATA) is left to its own checks.
    """
    data_target, model_target = str(cfg.data.get("_target_")), str(cfg.model.get("_target_"))
    accepted = TASK_DATA.get(model_target)
    if accepted is None or data_target not in DATA_MODULES or data_target in accepted:
        return
    data, model = choices.get("data"), choices.get("model")
    fits = fitting_models(data_target, group_targets(CONFIG_DIR / "model"))
    suggestion = f"model={fits[0]}" if fits else "a model of your own"
    raise UserError(
        f"data={data} ({data_target.rsplit('.', 1)[-1]}) cannot train model={model} "
        f"({model_target.rsplit('.', 1)[-1]}). Models that fit data={data}: "
        f"{', '.join(f'model={m}' for m in fits) or 'none in conf/model'}. "
        f"E.g. python -m litforge.train data={data} {suggestion}, or an experiment that sets both "
        "(experiment=<name>, listed by --help)."
    )
