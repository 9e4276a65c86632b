"""Hugging Face backbones shared by the text tasks (classification, masked LM, token tagging):
pretrained by hub id or folder, or built from a config for a tokenizer trained on the data."""

import inspect
import json
import re
from typing import Any

from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from litforge.utils.errors import UserError

# encoder blocks are named `<...>.layer.<i>.` (BERT, RoBERTa, DistilBERT) or `<...>.layers.<i>.`
LAYER_PATTERN = re.compile(r"\.layers?\.(\d+)\.")


def build_backbone(
    auto_class: Any,
    backbone: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase | None,
    **head: Any,
) -> PreTrainedModel:
    """`auto_class` (e.g. AutoModelForSequenceClassification) from
    `backbone = {"pretrained_model_name_or_path": ..., "config": {...}}`.

    With a name, weights and config come from the hub or folder and `config` overrides some
    keys (e.g. dropout); without, `config` (with `model_type`) describes an untrained model whose
    vocabulary is the tokenizer's. `head` (num_labels, id2label, ...) configures the task head.
    """
    name = backbone.get("pretrained_model_name_or_path")
    config = dict(backbone.get("config") or {})
    if name:
        try:
            model = auto_class.from_pretrained(name, **{**config, **head})
        except (OSError, ValueError) as err:
            raise UserError(
                f"model.backbone.pretrained_model_name_or_path={name}: not loadable "
                f"({str(err).splitlines()[0][:160]}). Give a hub id such as distilbert-base-uncased (needs "
                "internet once) or a folder written by save_pretrained; null builds one from model.backbone.config."
            ) from err
        # from_pretrained returns eval mode and Lightning keeps the modes it finds: dropout would stay off
        return model.train()
    if "model_type" not in config:
        raise UserError(
            "model.backbone: give pretrained_model_name_or_path (hub id or folder), or a config with "
            "model_type (e.g. bert) and its sizes to build an untrained model."
        )
    # a checkpoint's full config has its vocab_size; a config written by hand takes the tokenizer's
    fresh = "vocab_size" not in config
    if fresh:
        if tokenizer is None:
            raise UserError("model.backbone.config builds an untrained model, which needs the data's tokenizer_dir")
        config.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    try:
        model_config = AutoConfig.for_model(**{**config, **head})
    except (ValueError, KeyError) as err:
        raise UserError(f"model.backbone.config: {err}") from err
    positions = getattr(model_config, "max_position_embeddings", None)
    if fresh and positions is not None and tokenizer.model_max_length > positions:
        raise UserError(
            f"data.max_length={tokenizer.model_max_length} is more than model.backbone.config."
            f"max_position_embeddings={positions}: raise the latter or lower the former."
        )
    return auto_class.from_config(model_config)


def checkpoint_backbone(model: PreTrainedModel) -> dict[str, Any]:
    """The `backbone` argument that rebuilds `model` from its full config alone, so a checkpoint
    loads without the hub: the weights come from the checkpoint's state dict."""
    return {"pretrained_model_name_or_path": None, "config": json.loads(model.config.to_json_string(use_diff=False))}


def input_names(model: PreTrainedModel) -> set[str]:
    """The named inputs of the model's forward: a BERT tokenizer's token_type_ids must not reach
    a model without them (e.g. DistilBERT), whose **kwargs would hide the mistake."""
    return set(inspect.signature(model.forward).parameters) - {"kwargs"}


def layer_index(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder block i, num_layers + 1 for the head and the rest."""
    if "embeddings" in name:
        return 0
    match = LAYER_PATTERN.search(name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def layerwise_lr_groups(model: PreTrainedModel, lr: float, weight_decay: float, decay: float) -> list[dict[str, Any]]:
    """Optimiser groups whose learning rate shrinks by `decay` per block from the head down to
    the embeddings; biases and norm scales (1-d) are not decayed."""
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((layer_index(name, num_layers), param.ndim > 1), []).append(param)
    return [
        {
            "params": params,
            "lr": lr * decay ** (num_layers + 1 - depth),
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (depth, decays), params in sorted(groups.items())
    ]
