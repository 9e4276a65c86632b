"""Hugging Face vision backbones for image classification: pretrained by hub id or folder, or built
from a config offline; the preprocessing their image processor describes, done on batch tensors on
the device; and the export in Hugging Face format."""

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from litforge.tasks.hf_backbone import KEY, checkpoint_backbone, input_names, pretrained_backbone
from litforge.utils.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

PROCESSOR_KEY = "model.backbone.processor"
# what an image processor writes into preprocessor_config.json, read by AutoImageProcessor
PROCESSOR_FILE = "preprocessor_config.json"
BILINEAR = 2  # PIL.Image.Resampling.BILINEAR, as image processors store it


def _size(value: Any) -> list[int] | None:
    """[H, W] from an image processor's size or crop_size ({height, width}, {shortest_edge}, or an int)."""
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            return [int(value["height"]), int(value["width"])]
        if "shortest_edge" in value:
            return [int(value["shortest_edge"])] * 2
    return None


def read_processor_config(name: str) -> dict[str, Any]:
    """image_size, mean, std from the model's preprocessor_config.json (crop size where it crops);
    {} where it has none."""
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        raw, _ = ImageProcessingMixin.get_image_processor_dict(name)
    except (OSError, ValueError):
        return {}
    size = (_size(raw.get("crop_size")) if raw.get("do_center_crop") else None) or _size(raw.get("size"))
    settings: dict[str, Any] = {"image_size": size} if size else {}
    if raw.get("do_normalize", True) and "image_mean" in raw and "image_std" in raw:
        settings.update(mean=raw["image_mean"], std=raw["image_std"])
    elif not raw.get("do_normalize", True):
        settings.update(mean=[0.0], std=[1.0])
    return settings


def _floats(key: str, value: Any, channels: int) -> list[float]:
    values = [value] if isinstance(value, int | float) else list(value) if isinstance(value, Sequence) else []
    if len(values) == 1:
        values = values * channels
    if len(values) != channels or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise UserError(f"{PROCESSOR_KEY}.{key}={value!r}: give {channels} numbers, one per channel of the backbone")
    return [float(v) for v in values]


def processor_settings(name: str | None, given: Mapping[str, Any] | None, channels: int) -> dict[str, Any]:
    """The backbone's preprocessing as plain values: image_size [H, W], per-channel mean and std of 0..1
    pixels, and its channels. `given` (model.backbone.processor) overrides what the model's own
    preprocessor_config.json says."""
    settings = read_processor_config(name) if name else {}
    settings.update({key: value for key, value in (given or {}).items() if value is not None})
    missing = [key for key in ("image_size", "mean", "std") if key not in settings]
    if missing:
        where = f"{KEY}={name} has no {PROCESSOR_FILE} giving them" if name else "a backbone built from a config"
        raise UserError(
            f"{PROCESSOR_KEY}: {where}; set {', '.join(missing)} (e.g. image_size: [224, 224], "
            "mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])."
        )
    size = settings["image_size"]
    if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise UserError(f"{PROCESSOR_KEY}.image_size={size!r}: give [height, width] in pixels, e.g. [224, 224]")
    std = _floats("std", settings["std"], channels)
    if min(std) <= 0:
        raise UserError(f"{PROCESSOR_KEY}.std={std}: each must be above 0")
    mean = _floats("mean", settings["mean"], channels)
    return {"image_size": [int(s) for s in size], "mean": mean, "std": std, "channels": channels}


class ImagePreprocessor(nn.Module):
    """Batches as the data module gives them (standardised by `pixel_scaling`'s mean and std, pixels
    up to its max) to the backbone's input: 0..1 pixels, resized to image_size, grey repeated to 3
    channels (or colour averaged to 1), normalised by the backbone's mean and std."""

    def __init__(self, settings: Mapping[str, Any], pixel_scaling: Mapping[str, Any] | None) -> None:
        super().__init__()
        scaling = pixel_scaling or {"mean": [0.0], "std": [1.0], "max": 1.0}
        self.size = tuple(settings["image_size"])
        self.channels = int(settings["channels"])

        def buffer(name: str, values: Sequence[float]) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

        # the data module's standardisation undone: pixels = images * std / max + mean / max
        buffer("data_scale", [s / scaling["max"] for s in scaling["std"]])
        buffer("data_offset", [m / scaling["max"] for m in scaling["mean"]])
        buffer("mean", settings["mean"])
        buffer("std", settings["std"])

    def forward(self, images: Tensor) -> Tensor:
        pixels = images * self.data_scale + self.data_offset
        if tuple(pixels.shape[-2:]) != self.size:
            pixels = nn.functional.interpolate(
                pixels, size=self.size, mode="bilinear", align_corners=False, antialias=True
            )
        have = pixels.shape[1]
        if have != self.channels:
            pixels = pixels.expand(-1, self.channels, -1, -1) if have == 1 else pixels[:, :3]
            if self.channels == 1:
                pixels = pixels.mean(dim=1, keepdim=True)
        return (pixels - self.mean) / self.std


def check_channels(data_channels: int, backbone_channels: int) -> None:
    if data_channels != backbone_channels and not (data_channels in (1, 3, 4) and backbone_channels in (1, 3)):
        raise UserError(
            f"the images have {data_channels} channels and the backbone takes {backbone_channels}: give "
            "data.color_mode=L (1) or RGB (3)"
        )


def build_vision_model(backbone: Mapping[str, Any], class_names: Sequence[str]) -> "PreTrainedModel":
    """AutoModelForImageClassification with a head of one output per class, named by `class_names`:
    from `pretrained_model_name_or_path` (hub id or folder; its config.json sets the architecture and
    only the dropout keys of `config` apply), else built untrained from `config` (with model_type)."""
    from transformers import AutoConfig, AutoModelForImageClassification

    names = list(class_names)
    head = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }
    name = backbone.get("pretrained_model_name_or_path")
    config = dict(backbone.get("config") or {})
    if name:
        kept = {key: value for key, value in config.items() if "drop" in key}
        if len(kept) < len(config):
            log.info(
                "%s=%s: its own config.json sets the architecture; model.backbone.config's other keys ignored",
                KEY,
                name,
            )
        model = pretrained_backbone(AutoModelForImageClassification, str(name), kept, None, head)
        _fresh_head(model, str(name), AutoConfig.from_pretrained(str(name)).id2label, names)
        return model
    if "model_type" not in config:
        raise UserError(
            "model.backbone: give pretrained_model_name_or_path (hub id or folder), or a config with "
            "model_type (e.g. resnet, vit) and its sizes to build an untrained model."
        )
    try:
        model_config = AutoConfig.for_model(**{**config, **head})
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"model.backbone.config: {err}") from err
    return AutoModelForImageClassification.from_config(model_config)


def _fresh_head(model: "PreTrainedModel", name: str, saved: Mapping[int, str], names: list[str]) -> None:
    """A head of the right size trained on other labels (a folder fine-tuned on other classes) starts
    afresh, as one of another size does: its weights would tie the new classes to the old ones."""
    if [saved.get(i) for i in range(len(saved))] == names or len(saved) != len(names):
        return
    for child_name, child in model.named_children():
        if child_name != model.base_model_prefix:
            for module in child.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    log.info(
        "%s=%s: its head was trained on other labels (%s); re-initialised for %s",
        KEY,
        name,
        ", ".join(map(str, saved.values())),
        ", ".join(names),
    )


class VisionBackbone(nn.Module):
    """A Hugging Face image classifier (`model`) behind its preprocessing: images in, logits out."""

    def __init__(
        self,
        backbone: Mapping[str, Any],
        class_names: Sequence[str],
        input_shape: Sequence[int],
        pixel_scaling: Mapping[str, Any] | None,
    ) -> None:
        super().__init__()
        self.model = build_vision_model(backbone, class_names)
        channels = int(getattr(self.model.config, "num_channels", 3))
        check_channels(int(input_shape[0]), channels)
        name = backbone.get("pretrained_model_name_or_path")
        self.processor = processor_settings(str(name) if name else None, backbone.get("processor"), channels)
        self.preprocess = ImagePreprocessor(self.processor, pixel_scaling)
        # a ViT-like model given another image size than it was built for interpolates its position embeddings
        trained = _size(getattr(self.model.config, "image_size", None))
        resized = trained is not None and trained != self.processor["image_size"]
        self.extra = (
            {"interpolate_pos_encoding": True}
            if resized and "interpolate_pos_encoding" in input_names(self.model)
            else {}
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.model(pixel_values=self.preprocess(images), **self.extra).logits

    def checkpoint_backbone(self) -> dict[str, Any]:
        """The `backbone` argument that rebuilds this one offline: the full config and the processor settings."""
        return {**checkpoint_backbone(self.model), "processor": dict(self.processor)}

    def export(self, target: str | Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """save_pretrained (with `state_dict`'s weights where given) and a preprocessor_config.json for
        AutoImageProcessor that prepares 0..255 images as the preprocessing here does."""
        self.model.save_pretrained(target, state_dict=state_dict)
        height, width = self.processor["image_size"]
        processor = {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": height, "width": width},
            "resample": BILINEAR,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": self.processor["mean"],
            "image_std": self.processor["std"],
        }
        (Path(target) / PROCESSOR_FILE).write_text(json.dumps(processor, indent=2) + "\n")
