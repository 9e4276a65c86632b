from torch import nn

SCHEMES = ("default", "xavier", "kaiming")


def init_weights(module: nn.Module, scheme: str = "default") -> None:
    """Re-initialise linear and conv weights (biases to zero); `default` keeps PyTorch's own."""
    if scheme not in SCHEMES:
        raise ValueError(f"init={scheme!r} is not one of {SCHEMES}")
    if scheme == "default":
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
            if scheme == "xavier":
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
