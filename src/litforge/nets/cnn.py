from collections.abc import Sequence

from torch import Tensor, nn


class CNN(nn.Module):
    """Conv blocks (conv, batch norm, ReLU, 2x2 max-pool) then a two-layer classifier head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        hidden_size: int = 128,
        dropout: float = 0.25,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for out_channels in channels:
            if min(height, width) < 2:
                raise ValueError(
                    f"{len(channels)} conv blocks halve a {input_shape[1]}x{input_shape[2]} image below "
                    f"1 pixel: use fewer channels entries (model.net.channels)"
                )
            blocks += [
                nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity(),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels, height, width = out_channels, height // 2, width // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_channels * height * width, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_outputs),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
