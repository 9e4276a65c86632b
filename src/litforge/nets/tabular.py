"""Tabular nets of Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data": a residual
MLP and the FT-Transformer, on numeric features and optional categorical codes (`net(x, x_cat)`)."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from litforge.nets.embeddings import CategoricalEmbeddings, check_cardinalities, check_inputs
from litforge.nets.mlp import input_width, make_activation

NORMS = {"layer": nn.LayerNorm, "batch": nn.BatchNorm1d}


def make_norm(name: str, width: int) -> nn.Module:
    if name not in NORMS:
        raise ValueError(f"norm={name!r} is not one of {sorted(NORMS)}")
    return NORMS[name](width)


class ResidualBlock(nn.Module):
    """x + dropout(linear(dropout(activation(linear(norm(x))))))."""

    def __init__(
        self, width: int, hidden: int, activation: str, norm: str, dropout: float, residual_dropout: float
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            make_norm(norm, width),
            nn.Linear(width, hidden),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
            nn.Dropout(residual_dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResMLP(nn.Module):
    """The paper's ResNet: a linear layer to `width`, `num_blocks` residual blocks (hidden width
    `hidden_factor * width`), then norm, activation and a linear head. Categorical columns enter as
    learned embeddings (`embedding_dim`, null: sized by cardinality) beside the numeric input."""

    def __init__(
        self,
        input_shape: int | Sequence[int],
        num_outputs: int,
        width: int = 64,
        hidden_factor: float = 2.0,
        num_blocks: int = 2,
        activation: str = "relu",
        # layer norm rather than the paper's batch norm: it trains on any batch, a 1-row last one too
        norm: str = "layer",
        dropout: float = 0.2,
        residual_dropout: float = 0.0,
        cardinalities: Sequence[int] = (),
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embeddings = CategoricalEmbeddings(cardinalities, embedding_dim) if cardinalities else None
        in_width = input_width(input_shape) + (self.embeddings.width if self.embeddings is not None else 0)
        hidden = max(1, round(hidden_factor * width))
        self.stem = nn.Linear(in_width, width)
        self.blocks = nn.Sequential(
            *(ResidualBlock(width, hidden, activation, norm, dropout, residual_dropout) for _ in range(num_blocks))
        )
        self.head = nn.Sequential(make_norm(norm, width), make_activation(activation), nn.Linear(width, num_outputs))

    def forward(self, x: Tensor, x_cat: Tensor | None = None) -> Tensor:
        check_inputs(x, x_cat, len(self.embeddings.tables) if self.embeddings is not None else 0)
        x = x.flatten(1)
        if self.embeddings is not None:
            x = torch.cat([x, self.embeddings(x_cat)], dim=1)
        return self.head(self.blocks(self.stem(x)))


class FeatureTokenizer(nn.Module):
    """One `d_token` vector per feature: x_i * w_i + b_i for numeric feature i, and for categorical
    column j its code's embedding plus a bias b_j. [B, n] and [B, m] -> [B, n + m, d_token]."""

    def __init__(self, num_numeric: int, cardinalities: Sequence[int], d_token: int) -> None:
        super().__init__()
        cardinalities = check_cardinalities(cardinalities)
        bound = d_token**-0.5
        self.weight = nn.Parameter(torch.empty(num_numeric, d_token).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_numeric, d_token).uniform_(-bound, bound))
        self.num_categorical = len(cardinalities)
        if cardinalities:
            # one table for all columns, each column's codes shifted to its own rows
            self.categories = nn.Embedding(sum(cardinalities), d_token)
            nn.init.uniform_(self.categories.weight, -bound, bound)
            offsets = torch.tensor([0, *cardinalities[:-1]]).cumsum(0)
            self.register_buffer("offsets", offsets, persistent=False)
            self.category_bias = nn.Parameter(torch.empty(len(cardinalities), d_token).uniform_(-bound, bound))

    def forward(self, x: Tensor, x_cat: Tensor | None = None) -> Tensor:
        tokens = x.unsqueeze(-1) * self.weight + self.bias
        if self.num_categorical:
            tokens = torch.cat([tokens, self.categories(x_cat + self.offsets) + self.category_bias], dim=1)
        return tokens


class FTTransformer(nn.Module):
    """Feature tokens and a learned [CLS] token through `num_blocks` pre-norm transformer blocks
    (`num_heads` heads, feed-forward width `ffn_factor * d_token`); the head reads the [CLS] token."""

    def __init__(
        self,
        input_shape: int | Sequence[int],
        num_outputs: int,
        d_token: int = 64,
        num_blocks: int = 2,
        num_heads: int = 8,
        ffn_factor: float = 4 / 3,
        dropout: float = 0.1,
        activation: str = "gelu",
        cardinalities: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if d_token % num_heads:
            raise ValueError(f"d_token={d_token} is not a multiple of num_heads={num_heads}")
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation={activation!r} is not one of ['gelu', 'relu']")
        self.tokenizer = FeatureTokenizer(input_width(input_shape), cardinalities, d_token)
        bound = d_token**-0.5
        self.cls = nn.Parameter(torch.empty(1, 1, d_token).uniform_(-bound, bound))
        # torch's layer has one dropout for attention, feed-forward and residual (the paper: 0.2 / 0.1 / 0)
        block = nn.TransformerEncoderLayer(
            d_token,
            num_heads,
            dim_feedforward=max(1, round(ffn_factor * d_token)),
            dropout=dropout,
            activation=activation,
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, num_blocks, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_token), nn.ReLU(), nn.Linear(d_token, num_outputs))

    def forward(self, x: Tensor, x_cat: Tensor | None = None) -> Tensor:
        check_inputs(x, x_cat, self.tokenizer.num_categorical)
        tokens = self.tokenizer(x.flatten(1), x_cat)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.head(self.blocks(tokens)[:, 0])
