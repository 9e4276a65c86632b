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
    "litforge.tasks.tabular_classification.TabularClassificationModule": (
        "litforge.data.tabular.classification.TabularClassificationDataModule",
    ),
    "litforge.tasks.text_classification.TextClassificationModule": (
        "litforge.data.text.classification.TextDataModule",
    ),
    "litforge.tasks.token_classification.TokenClassificationModule": (
        "litforge.data.text.token_classification.TokenDataModule",
    ),
    "litforge.tasks.masked_lm.MaskedLanguageModelingModule": ("litforge.data.text.masked_lm.MaskedLMDataModule",),
}
DATA_MODULES = frozenset(data for modules in TASK_DATA.values() for data in modules)
# litforge's own text encoders (nets/text_encoders.py) by model_type, and the tasks they have heads for
TEXT_ENCODER_TASKS: dict[str, tuple[str, ...]] = {
    kind: (
        "litforge.tasks.text_classification.TextClassificationModule",
        "litforge.tasks.token_classification.TokenClassificationModule",
    )
    for kind in ("litforge_bilstm", "litforge_textcnn")
}
# the validation metrics each task logs, the names model.monitor may take; tests/test_bad_values.py
# trains each task and compares (the text classifier logs val/auroc only for two-label data)
CLASSIFICATION_METRICS = ("val/loss", "val/acc", "val/f1", "val/precision", "val/recall")
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "litforge.tasks.image_classification.ImageClassificationModule": CLASSIFICATION_METRICS,
    "litforge.tasks.regression.RegressionModule": ("val/loss", "val/mse", "val/rmse", "val/mae", "val/r2"),
    "litforge.tasks.tabular_classification.TabularClassificationModule": (
        "val/loss",
        "val/acc",
        "val/f1",
        "val/auroc",
        "val/ap",
    ),
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


def check_backbone_fits_model(cfg: DictConfig, choices: Mapping[str, str | None]) -> None:
    """Refuse one of litforge's text encoders (model/backbone=bilstm|textcnn) as the backbone of a
    litforge task it has no head for (masked LM, images), naming the models that take it and the
    backbones the task takes; `choices` name the options in the message."""
    kind = OmegaConf.select(cfg, "model.backbone.config.model_type", default=None, throw_on_missing=False)
    fitting = TEXT_ENCODER_TASKS.get(str(kind))
    model_target = str(cfg.model.get("_target_"))
    if fitting is None or model_target in fitting or model_target not in TASK_DATA:
        return
    backbone, model = choices.get("model/backbone"), choices.get("model")
    models = [f"model={name}" for name, task in group_targets(CONFIG_DIR / "model").items() if task in fitting]
    valid = ", ".join(f"model/backbone={option}" for option in backbone_options(model_target)) or "none"
    plain = " (or none: model/net=cnn|mlp, its default)" if model_target in VISION_TASKS else ""
    raise UserError(
        f"model/backbone={backbone} (model_type {kind}) is a text encoder with heads for {' and '.join(models)}, "
        f"not for model={model} ({model_target.rsplit('.', 1)[-1]}). Backbones for model={model}: {valid}{plain}; "
        f"or give {' or '.join(models)} with model/backbone={backbone}."
    )


# the tasks that take a vision backbone: a model/backbone option with `processor` settings
VISION_TASKS = ("litforge.tasks.image_classification.ImageClassificationModule",)


def backbone_options(model_target: str) -> list[str]:
    """The model/backbone options a task takes: the vision ones (with a `processor`) for an image task,
    the others, less text encoders without a head for it, for a text task."""
    vision = model_target in VISION_TASKS
    names = []
    for path in sorted((CONFIG_DIR / "model" / "backbone").glob("*.yaml")):
        loaded = OmegaConf.load(path)
        node = loaded.get("backbone") if isinstance(loaded.get("backbone"), DictConfig) else loaded
        kind = OmegaConf.select(node, "config.model_type", default=None)
        if ("processor" in node) == vision and model_target in TEXT_ENCODER_TASKS.get(str(kind), (model_target,)):
            names.append(path.stem)
    return names


def check_backbone_modality(cfg: DictConfig, choices: Mapping[str, str | None]) -> None:
    """Refuse a text backbone on the image classifier and a vision backbone on a text task, naming the
    backbones that task takes."""
    backbone = OmegaConf.select(cfg, "model.backbone", default=None, throw_on_missing=False)
    model_target = str(cfg.model.get("_target_"))
    if not isinstance(backbone, DictConfig) or model_target not in TASK_DATA:
        return
    vision_backbone = "processor" in backbone
    if vision_backbone == (model_target in VISION_TASKS):
        return
    name, model = choices.get("model/backbone"), choices.get("model")
    valid = ", ".join(f"model/backbone={option}" for option in backbone_options(model_target))
    plain = " (or none: model/net=cnn|mlp, its default)" if not vision_backbone else ""
    raise UserError(
        f"model/backbone={name} is a {'vision' if vision_backbone else 'text'} backbone, which model={model} "
        f"({model_target.rsplit('.', 1)[-1]}) cannot take. Backbones for model={model}: {valid}{plain}."
    )


def check_data_fits_model(cfg: DictConfig, choices: Mapping[str, str | None]) -> None:
    """Refuse a litforge data module paired with a litforge task that cannot train on it, and a text
    encoder backbone on a task without its head (see check_backbone_fits_model).

    `choices` are the group choices Hydra composed (data=..., model=...), for the message.
    A task or data module of the user's own (not in TASK_DATA) is left to its own checks.
    """
    check_backbone_fits_model(cfg, choices)
    check_backbone_modality(cfg, choices)
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
