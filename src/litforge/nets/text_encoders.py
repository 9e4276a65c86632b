"""Non-transformer text encoders as Hugging Face models: a bidirectional LSTM and a 1-d CNN over
word embeddings, each with a sequence- and a token-classification head returning `logits`.

Being `PreTrainedModel`s with their own `PreTrainedConfig` (model_type `litforge_bilstm`,
`litforge_textcnn`), they are built, checkpointed and exported (`save_pretrained`) like the
transformer backbones. Importing this module registers them with transformers' Auto classes, so
`AutoModelForSequenceClassification.from_pretrained(<exported folder>)` and `transformers.pipeline`
load an export once `litforge.nets.text_encoders` is imported.
"""

from dataclasses import field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput, TokenClassifierOutput

IGNORE_INDEX = -100


class BiLSTMConfig(PreTrainedConfig):
    """Embeddings of `embedding_dim`, then `num_layers` bidirectional LSTMs of `hidden_size` per direction."""

    model_type = "litforge_bilstm"
    # the name layer-wise LR decay and the shared code read the depth by
    attribute_map = {"num_hidden_layers": "num_layers"}

    vocab_size: int = 1000
    embedding_dim: int = 100
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.2
    pad_token_id: int | None = 0


class TextCNNConfig(PreTrainedConfig):
    """Embeddings of `embedding_dim`, then `num_layers` blocks of same-padded 1-d convolutions, one of
    `num_filters` channels per width in `kernel_sizes`, concatenated (Kim's CNN, stacked)."""

    model_type = "litforge_textcnn"
    attribute_map = {"num_hidden_layers": "num_layers"}

    vocab_size: int = 1000
    embedding_dim: int = 100
    num_filters: int = 100
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    num_layers: int = 1
    dropout: float = 0.2
    pad_token_id: int | None = 0


def _check_sizes(config: PreTrainedConfig, **sizes: Any) -> None:
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"model.backbone.config.{key}={value}: give a whole number of at least 1")
    if not 0 <= config.dropout < 1:
        raise ValueError(f"model.backbone.config.dropout={config.dropout}: give a probability in [0, 1)")


class TextEncoderPreTrainedModel(PreTrainedModel):
    """What the encoders and their heads share: the base model's name and torch's own initialisation,
    which LSTMs and CNNs are usually trained from (transformers' default is a small normal for all)."""

    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    _input_embed_layer = "embeddings"

    def _init_weights(self, module: nn.Module) -> None:
        # transformers guards torch's init functions, so weights loaded from a checkpoint stay as they are
        if isinstance(module, nn.Linear | nn.Conv1d | nn.LSTM | nn.Embedding):
            module.reset_parameters()


class BiLSTMModel(TextEncoderPreTrainedModel):
    """Per-token features (2 x hidden_size) of a bidirectional LSTM over right-padded batches: padding
    is packed away, so a text's features do not depend on what it was batched with."""

    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__(config)
        _check_sizes(config, embedding_dim=config.embedding_dim, hidden_size=config.hidden_size)
        _check_sizes(config, num_layers=config.num_layers)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        # one LSTM per layer (not nn.LSTM's num_layers) so that parameters are named `layers.<i>.`
        # as layer-wise LR decay groups them
        inputs = [config.embedding_dim] + [2 * config.hidden_size] * (config.num_layers - 1)
        self.layers = nn.ModuleList(
            nn.LSTM(size, config.hidden_size, batch_first=True, bidirectional=True) for size in inputs
        )
        self.output_size = 2 * config.hidden_size
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> BaseModelOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        lengths = mask.sum(1).clamp(min=1).cpu()
        embedded = self.dropout(self.embeddings(input_ids))
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        for depth, layer in enumerate(self.layers):
            if depth:
                dropped = self.dropout(packed.data)
                packed = PackedSequence(dropped, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
            packed, _ = layer(packed)
        hidden, _ = pad_packed_sequence(packed, batch_first=True, total_length=input_ids.shape[1])
        return BaseModelOutput(last_hidden_state=hidden)


class ConvBlock(nn.Module):
    """Same-padded convolutions of several widths side by side, ReLU, channels concatenated; an even
    width sees one token more to the right, as torch's padding="same" (which warns on even widths) does."""

    def __init__(self, in_channels: int, num_filters: int, kernel_sizes: list[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(in_channels, num_filters, k) for k in kernel_sizes)
        self.padding = [((k - 1) // 2, k // 2) for k in kernel_sizes]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(F.pad(x, pad)).relu() for conv, pad in zip(self.convs, self.padding, strict=True)], 1)


class TextCNNModel(TextEncoderPreTrainedModel):
    """Per-token features (num_filters x len(kernel_sizes)) of stacked same-padded convolutions;
    padding positions are zeroed after each block, as the zeros beyond a text's ends are."""

    config_class = TextCNNConfig

    def __init__(self, config: TextCNNConfig) -> None:
        super().__init__(config)
        kernels = list(config.kernel_sizes or [])
        _check_sizes(config, embedding_dim=config.embedding_dim, num_filters=config.num_filters)
        _check_sizes(config, num_layers=config.num_layers)
        if not kernels or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in kernels):
            raise ValueError(
                f"model.backbone.config.kernel_sizes={config.kernel_sizes}: give a list of convolution widths "
                "of at least 1, e.g. [3, 4, 5]"
            )
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.output_size = config.num_filters * len(kernels)
        inputs = [config.embedding_dim] + [self.output_size] * (config.num_layers - 1)
        self.layers = nn.ModuleList(ConvBlock(size, config.num_filters, kernels) for size in inputs)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> BaseModelOutput:
        mask = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).unsqueeze(1)
        x = self.dropout(self.embeddings(input_ids)).transpose(1, 2) * mask
        for depth, layer in enumerate(self.layers):
            x = layer(self.dropout(x) if depth else x) * mask
        return BaseModelOutput(last_hidden_state=x.transpose(1, 2))


class ClassificationHead:
    """A linear layer on the encoder's features, which a subclass pools (`pool`) and scores (`loss`)."""

    encoder_class: type[TextEncoderPreTrainedModel]
    output_class: type[SequenceClassifierOutput] | type[TokenClassifierOutput]

    def __init__(self, config: PreTrainedConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = self.encoder_class(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(self.encoder.output_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | TokenClassifierOutput:
        """Other tokenizer outputs (token_type_ids), which transformers pipelines pass along, are unused."""
        hidden = self.encoder(input_ids, attention_mask).last_hidden_state
        logits = self.classifier(self.dropout(self.pool(hidden, attention_mask)))
        return self.output_class(loss=None if labels is None else self.loss(logits, labels), logits=logits)


class SequenceClassificationHead(ClassificationHead):
    """One prediction a text: the features max-pooled over its tokens (padding left out)."""

    output_class = SequenceClassifierOutput

    def pool(self, hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
        if attention_mask is not None:
            hidden = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
        return hidden.max(dim=1).values

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels)


class TokenClassificationHead(ClassificationHead):
    """One prediction a token."""

    output_class = TokenClassifierOutput

    def pool(self, hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
        return hidden

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


class BiLSTMForSequenceClassification(SequenceClassificationHead, TextEncoderPreTrainedModel):
    config_class = BiLSTMConfig
    encoder_class = BiLSTMModel


class BiLSTMForTokenClassification(TokenClassificationHead, TextEncoderPreTrainedModel):
    config_class = BiLSTMConfig
    encoder_class = BiLSTMModel


class TextCNNForSequenceClassification(SequenceClassificationHead, TextEncoderPreTrainedModel):
    config_class = TextCNNConfig
    encoder_class = TextCNNModel


class TextCNNForTokenClassification(TokenClassificationHead, TextEncoderPreTrainedModel):
    config_class = TextCNNConfig
    encoder_class = TextCNNModel


ENCODERS = {
    BiLSTMConfig: (BiLSTMModel, BiLSTMForSequenceClassification, BiLSTMForTokenClassification),
    TextCNNConfig: (TextCNNModel, TextCNNForSequenceClassification, TextCNNForTokenClassification),
}
for _config, (_base, _sequence, _token) in ENCODERS.items():
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _base, exist_ok=True)
    AutoModelForSequenceClassification.register(_config, _sequence, exist_ok=True)
    AutoModelForTokenClassification.register(_config, _token, exist_ok=True)
