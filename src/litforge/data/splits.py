"""Seeded train/validation/test splits: the same seed gives the same examples in each split."""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from litforge.utils.errors import UserError


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Shuffled index sets, one per fraction (the first takes the remainder); the same for a seed."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [round(f * n) for f in fractions[1:]]
    sizes.insert(0, n - sum(sizes))
    return list(torch.split(order, sizes))


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Refuse split fractions that leave nothing to train on, before any data is read."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise UserError(
            f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: give each in [0, 1) "
            "and together below 1, so some data is left to train on (e.g. data.val_fraction=0.1 "
            "data.test_fraction=0.1)"
        )


def carve_missing_splits(
    splits: dict[str, Any],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    take: Callable[[Any, Any], Any] = lambda items, index: [items[i] for i in index],
) -> dict[str, Any]:
    """Validation and test splits a source lacks, cut from its training split (seeded).

    `splits` maps "train" / "validation" / "test" to a list of examples, or to anything `take`
    can index (e.g. a dict of columns); the training split keeps what is not cut off.
    """
    fractions = {"validation": val_fraction, "test": test_fraction}
    missing = [role for role in ("validation", "test") if role not in splits]
    for role in missing:
        if not 0 < fractions[role] < 1:
            key = "val" if role == "validation" else "test"
            raise UserError(f"no {role} split: set data.{key}_fraction in (0, 1) or give data.{key}_file")
    if missing:
        train = splits["train"]
        size = len(next(iter(train.values()))) if isinstance(train, dict) else len(train)
        parts = split_indices(size, [0, *(fractions[r] for r in missing)], seed)
        for role, index in zip(["train", *missing], parts, strict=True):
            # a numpy array, not a list: 8 bytes a row where a corpus has millions
            splits[role] = take(train, index.numpy())
    return splits
