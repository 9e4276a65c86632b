"""Learned embeddings of categorical columns, shared by the tabular nets."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

MAX_EMBEDDING_DIM = 50


def embedding_dim_for(cardinality: int) -> int:
    """fastai's rule of thumb: about 1.6 * cardinality^0.56, at most 50."""
    return min(MAX_EMBEDDING_DIM, round(1.6 * cardinality**0.56))


def check_cardinalities(cardinalities: Sequence[int]) -> list[int]:
    cardinalities = [int(c) for c in cardinalities]
    if any(c < 1 for c in cardinalities):
        raise ValueError(f"cardinalities={cardinalities}: every categorical column needs at least one code")
    return cardinalities


def check_inputs(x: Tensor, x_cat: Tensor | None, num_categorical: int) -> None:
    """Refuse categorical codes a net was not built for, or their absence where it was."""
    if num_categorical == 0 and x_cat is not None and x_cat.shape[-1] > 0:
        raise ValueError(f"the net was built without categorical columns but got x_cat of shape {list(x_cat.shape)}")
    if num_categorical > 0:
        if x_cat is None:
            raise ValueError(f"the net was built for {num_categorical} categorical columns: call net(x, x_cat)")
        if x_cat.dim() != 2 or x_cat.shape[1] != num_categorical or len(x_cat) != len(x):
            raise ValueError(
                f"x_cat of shape {list(x_cat.shape)}: expected [{len(x)}, {num_categorical}] (a code per column)"
            )


class CategoricalEmbeddings(nn.Module):
    """One embedding table per categorical column; codes [B, n_columns] -> concatenated vectors [B, width].
    `embedding_dim` null sizes each column by `embedding_dim_for` its cardinality."""

    def __init__(self, cardinalities: Sequence[int], embedding_dim: int | None = None) -> None:
        super().__init__()
        cardinalities = check_cardinalities(cardinalities)
        dims = [embedding_dim or embedding_dim_for(c) for c in cardinalities]
        self.tables = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cardinalities, dims, strict=True))
        self.width = sum(dims)

    def forward(self, x_cat: Tensor) -> Tensor:
        return torch.cat([table(x_cat[:, i]) for i, table in enumerate(self.tables)], dim=1)
