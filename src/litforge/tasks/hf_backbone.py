"""Hugging Face backbones shared by the text tasks (classification, masked LM, token tagging):
pretrained by hub id or folder, or built from a config for a tokenizer trained on the data, its
embeddings optionally initialised from a word-vectors file (`word_vectors`). litforge's own
encoders (nets/text_encoders.py: model_type litforge_bilstm, litforge_textcnn) are registered with
the Auto classes here, so they build, load and export as any transformers model."""

import inspect
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litforge.utils.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

KEY = "model.backbone.pretrained_model_name_or_path"
VALID = (
    "Give a folder written by save_pretrained (config.json, the weights, the tokenizer), a hub id such as "
    "bert-base-uncased (needs internet once), or null to build model.backbone.config untrained."
)
# from-scratch keys that a pretrained model's weights fix (BERT/RoBERTa/ELECTRA names and DistilBERT's own):
# with a pretrained path they are ignored, while keys that adjust a model (dropouts) are applied
ARCHITECTURE_KEYS = frozenset(
    {
        "model_type",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "max_position_embeddings",
        "type_vocab_size",
        "embedding_size",
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        # litforge's BiLSTM and TextCNN encoders
        "embedding_dim",
        "num_layers",
        "num_filters",
        "kernel_sizes",
    }
)
WORD_VECTORS = "model.backbone.word_vectors"
# config keys that size a model's input embeddings, the first whose value is the embedding size is named
EMBEDDING_SIZE_KEYS = ("embedding_dim", "embedding_size", "hidden_size", "dim", "d_model")


def check_pretrained_source(backbone: Mapping[str, Any] | None) -> None:
    """A local folder named as the backbone must hold a config.json, and a word-vectors file must exist
    with vectors of the configured embedding_dim, checked before any data is read so that a wrong path
    leaves no half-written run; a hub id is checked when it loads."""
    name = (backbone or {}).get("pretrained_model_name_or_path")
    vectors = (backbone or {}).get("word_vectors")
    if vectors:
        _check_word_vectors_source(name, str(vectors), (backbone or {}).get("config") or {})
    if not name:
        return
    path = Path(str(name))
    if path.is_file():
        raise UserError(f"{KEY}={name} is a file, not a model folder. {VALID}")
    if not path.is_dir():
        # Hugging Face takes anything that is not a folder for a hub id; one written like a path is a typo
        if str(name).startswith(("/", ".", "~")):
            raise UserError(f"{KEY}={name}: no such folder. {VALID}")
        return
    if not (path / "config.json").is_file():
        raise UserError(f"{KEY}={name}: the folder has no config.json, so it is no saved model. {VALID}")
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{KEY}={name}: its config.json is not readable JSON ({err}). {VALID}") from err


def _check_word_vectors_source(name: Any, vectors: str, config: Mapping[str, Any]) -> None:
    from litforge.data.text.word_vectors import check_size, vector_size

    if name:
        raise UserError(
            f"{WORD_VECTORS}={vectors} initialises the embeddings of an untrained model, but {KEY}={name} "
            f"brings trained ones. Give one of the two: {WORD_VECTORS}=null, or {KEY}=null."
        )
    size = vector_size(vectors)
    # only litforge's encoders say by this key alone how wide their embeddings are; others are checked when built
    if "embedding_dim" in config:
        check_size(vectors, size, int(config["embedding_dim"]), "model.backbone.config.embedding_dim")


def init_word_vectors(model: "PreTrainedModel", path: str, tokenizer: "PreTrainedTokenizerBase | None") -> int:
    """The rows of `model`'s input embeddings for the tokenizer's tokens found in the word-vectors
    file (see data.text.word_vectors), the others left as initialised; returns how many, also logged."""
    import torch

    from litforge.data.text.word_vectors import check_size, vector_size, vocabulary_vectors

    if tokenizer is None:
        raise UserError(f"{WORD_VECTORS}={path} maps words through the data's tokenizer, and there is none here")
    embeddings = model.get_input_embeddings()
    keys = [key for key in EMBEDDING_SIZE_KEYS if getattr(model.config, key, None) == embeddings.embedding_dim]
    size = vector_size(path)
    check_size(
        path, size, embeddings.embedding_dim, f"model.backbone.config.{keys[0]}" if keys else "the embedding size"
    )
    vocab = tokenizer.get_vocab()
    rows, lowered = vocabulary_vectors(path, size, vocab)
    if rows:
        with torch.no_grad():
            values = torch.tensor(list(rows.values()), dtype=embeddings.weight.dtype)
            embeddings.weight[torch.tensor(list(rows))] = values.to(embeddings.weight.device)
    shown = f" ({lowered} by their lowercased form)" if lowered else ""
    message = "%s=%s: %d of the %d vocabulary tokens found%s; the other embedding rows keep their random values"
    log.info(message, WORD_VECTORS, path, len(rows), len(vocab), shown)
    if not rows:
        log.warning("%s=%s holds none of the tokenizer's tokens: is it a file for this language?", WORD_VECTORS, path)
    return len(rows)


def build_backbone(
    auto_class: Any,
    backbone: dict[str, Any],
    tokenizer: "PreTrainedTokenizerBase | None",
    **head: Any,
) -> "PreTrainedModel":
    """`auto_class` (e.g. AutoModelForSequenceClassification) from
    `backbone = {"pretrained_model_name_or_path": ..., "config": {...}, "word_vectors": ...}`.

    With a name, weights and config come from the hub or folder (see `pretrained_backbone`);
    without, `config` (with `model_type`) describes an untrained model whose vocabulary is the
    tokenizer's, its embeddings initialised from the file `word_vectors` if given. `head`
    (num_labels, id2label, ...) configures the task head.
    """
    from transformers import AutoConfig

    import litforge.nets.text_encoders  # noqa: F401  (registers litforge's encoders with the Auto classes)

    name = backbone.get("pretrained_model_name_or_path")
    config = dict(backbone.get("config") or {})
    vectors = backbone.get("word_vectors")
    if vectors:
        _check_word_vectors_source(name, str(vectors), config)
    if name:
        return pretrained_backbone(auto_class, str(name), config, tokenizer, head)
    if "model_type" not in config:
        raise UserError(
            "model.backbone: give pretrained_model_name_or_path (hub id or folder), or a config with "
            "model_type (e.g. bert) and its sizes to build an untrained model."
        )
    # a checkpoint's full config has its vocab_size; a config written by hand takes the tokenizer's
    fresh = "vocab_size" not in config
    if fresh:
        if tokenizer is None:
            raise UserError("model.backbone.config builds an untrained model, which needs the data's tokenizer")
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
    try:
        model = auto_class.from_config(model_config)
    except ValueError as err:
        raise UserError(f"model.backbone.config: {_first_line(err)}") from err
    if vectors:
        init_word_vectors(model, str(vectors), tokenizer)
    return model


def pretrained_backbone(
    auto_class: Any,
    name: str,
    overrides: dict[str, Any],
    tokenizer: "PreTrainedTokenizerBase | None",
    head: dict[str, Any],
) -> "PreTrainedModel":
    """The model's own config.json sets its architecture, as with `from_pretrained(name)`: the
    architecture keys of `overrides` (model.backbone.config) are ignored, the others (dropouts)
    applied, both named in one log line; a failure to load is a UserError naming the folder."""
    from transformers import AutoConfig

    try:
        base = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise UserError(f"{KEY}={name}: its config could not be loaded ({_first_line(err)}). {VALID}") from err
    applied = _apply_overrides(name, base, overrides)
    model_config = AutoConfig.from_pretrained(name, **applied, **head)
    if tokenizer is not None and len(tokenizer) > model_config.vocab_size:
        raise UserError(
            f"data.tokenizer has {len(tokenizer)} tokens, more than the vocab_size {model_config.vocab_size} of "
            f"{KEY}={name}: ids past it have no embedding. Leave data.tokenizer to follow the backbone, "
            "which loads the model's own tokenizer."
        )
    try:
        # a head of another size (a folder fine-tuned on other labels) is re-initialised, as fine-tuning wants
        model, info = auto_class.from_pretrained(
            name, config=model_config, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"{KEY}={name}: its weights could not be loaded ({_first_line(err)}). {VALID}") from err
    _check_encoder_shapes(name, model, info.get("mismatched_keys") or [])
    # from_pretrained returns eval mode and Lightning keeps the modes it finds: dropout would stay off
    return model.train()


def _apply_overrides(name: str, base: "PreTrainedConfig", overrides: dict[str, Any]) -> dict[str, Any]:
    """The keys of `overrides` to apply to the pretrained `base`; what is ignored (and applied) is logged."""
    applied, ignored, unknown = {}, [], []
    for key, value in overrides.items():
        if key in ARCHITECTURE_KEYS or base.attribute_map.get(key) in ARCHITECTURE_KEYS:
            if getattr(base, key, None) != value:
                ignored.append(f"{key}={value} (the model's: {getattr(base, key, None)})")
        elif hasattr(base, key):
            applied[key] = value
        else:
            unknown.append(key)
    changed = [f"{k}={v}" for k, v in applied.items() if getattr(base, k) != v]
    parts = [f"ignored from model.backbone.config: {', '.join(ignored)}"] if ignored else []
    parts += [f"applied: {', '.join(changed)}"] if changed else []
    parts += [f"no keys of a {base.model_type} config, ignored: {', '.join(unknown)}"] if unknown else []
    if parts:
        log.info("%s=%s: its own config.json sets the architecture; %s", KEY, name, "; ".join(parts))
    return applied


def _check_encoder_shapes(name: str, model: "PreTrainedModel", mismatched: Iterable[tuple[str, Any, Any]]) -> None:
    """Encoder weights of another shape than config.json says mean a broken folder, not a new head."""
    prefix = f"{model.base_model_prefix}."
    encoder = sorted((key, tuple(saved), tuple(wanted)) for key, saved, wanted in mismatched if key.startswith(prefix))
    if encoder:
        key, saved, wanted = encoder[0]
        raise UserError(
            f"{KEY}={name}: {len(encoder)} weights have another shape than its config.json gives, e.g. {key} is "
            f"{list(saved)} in the weights but {list(wanted)} by the config. The folder's config.json and weights "
            "belong to different models: save the model again with save_pretrained."
        )
    for key, saved, wanted in sorted(mismatched):
        log.info("%s=%s: head weight %s of shape %s re-initialised as %s", KEY, name, key, list(saved), list(wanted))


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


def checkpoint_backbone(model: "PreTrainedModel") -> dict[str, Any]:
    """The `backbone` argument that rebuilds `model` from its full config alone, so a checkpoint
    loads without the hub: the weights come from the checkpoint's state dict."""
    return {"pretrained_model_name_or_path": None, "config": json.loads(model.config.to_json_string(use_diff=False))}


def input_names(model: "PreTrainedModel") -> set[str]:
    """The named inputs of the model's forward: a BERT tokenizer's token_type_ids must not reach
    a model without them (e.g. DistilBERT), whose **kwargs would hide the mistake."""
    return set(inspect.signature(model.forward).parameters) - {"kwargs"}
