import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from litforge.nets.embeddings import CategoricalEmbeddings, check_inputs

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def input_width(input_shape: int | Sequence[int]) -> int:
    """The number of values of one input, flattened."""
    return input_shape if isinstance(input_shape, int) else math.prod(input_shape)


class MLP(nn.Module):
    """Fully connected layers; inputs of any shape are flattened first. With `cardinalities` (codes per
    categorical column), each column's learned embedding (`embedding_dim`, null: sized by cardinality)
    is concatenated to the numeric input: `net(x, x_cat)`."""

    def __init__(
        self,
        input_shape: int | Sequence[int],
        num_outputs: int,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        cardinalities: Sequence[int] = (),
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        width = input_width(input_shape)
        self.embeddings = CategoricalEmbeddings(cardinalities, embedding_dim) if cardinalities else None
        if self.embeddings is not None:
            width += self.embeddings.width
        layers: list[nn.Module] = [nn.Flatten()]
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers += [make_activation(activation), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, x_cat: Tensor | None = None) -> Tensor:
        check_inputs(x, x_cat, len(self.embeddings.tables) if self.embeddings is not None else 0)
        if self.embeddings is not None:
            x = torch.cat([x.flatten(1), self.embeddings(x_cat)], dim=1)
        return self.layers(x)
