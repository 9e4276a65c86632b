"""Where tagged sentences come from: the generated corpus, a hub data set, the user's files.
Each loader returns sentences by split role ("train", and "validation"/"test" where it has them)."""

from typing import Any

from litforge.data.conll import Sentence, read_tagged_file
from litforge.data.hub import load_hub_dataset
from litforge.data.ner_corpus import generate_sentences
from litforge.utils.errors import UserError

ROLE_KEYS = {"train": "train", "validation": "val", "test": "test"}


def load_generated(num_sentences: int, seed: int) -> dict[str, list[Sentence]]:
    return {"train": generate_sentences(num_sentences, seed)}


def load_files(files: dict[str, str | None], token_column: Any, tag_column: Any) -> dict[str, list[Sentence]]:
    """`files` maps roles to CoNLL or jsonl paths; integer columns index the CoNLL columns."""
    if not files.get("train"):
        raise UserError(
            "data.train_file is not set: give your training file, e.g. data.train_file=data/train.conll "
            "(one 'token tag' line each, blank lines between sentences) or a jsonl with tokens and tags lists."
        )
    for key, column in (("data.token_column", token_column), ("data.tag_column", tag_column)):
        if not isinstance(column, int):
            raise UserError(f"{key}={column!r}: for CoNLL files give a column index (0 first, -1 last)")
    return {role: read_tagged_file(path, token_column, tag_column) for role, path in files.items() if path is not None}


def _tag_names(feature: Any) -> list[str] | None:
    """The tag names of a Sequence(ClassLabel) column; None where tags are stored as strings."""
    inner = getattr(feature, "feature", None)
    return list(inner.names) if hasattr(inner, "names") else None


def load_hub(
    name: str,
    config_name: str | None,
    cache_dir: str,
    splits: dict[str, str | None],
    token_column: Any,
    tag_column: Any,
) -> dict[str, list[Sentence]]:
    """The named splits of a hub data set with a list-of-tokens and a list-of-tags column."""

    loaded = load_hub_dataset(name, config_name, cache_dir)
    raw = {}
    for role, split in splits.items():
        if split is None:
            continue
        if split not in loaded:
            raise UserError(
                f"data.{ROLE_KEYS[role]}_split={split}: {name} has no such split; its splits are {sorted(loaded)}."
            )
        dataset = loaded[split]
        for key, column in (("data.token_column", token_column), ("data.tag_column", tag_column)):
            if column not in dataset.column_names:
                raise UserError(
                    f"{name} [{split}] has no column {column!r} ({key}); its columns are {dataset.column_names}."
                )
        names = _tag_names(dataset.features[tag_column])
        words, tags = dataset[token_column], dataset[tag_column]
        raw[role] = [
            Sentence(w, [names[t] for t in ts] if names else [str(t) for t in ts], f"{name} [{split}] row {i}")
            for i, (w, ts) in enumerate(zip(words, tags, strict=True))
            if w
        ]
    return raw
