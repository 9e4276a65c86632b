import pytest
import torch

from litforge.nets import CNN, MLP
from litforge.nets.init import init_weights


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "leaky_relu"])
def test_mlp_flattens_any_input_shape(activation: str) -> None:
    net = MLP([3, 4, 4], 5, hidden_sizes=[16, 8], activation=activation, dropout=0.1, batch_norm=True)
    assert net(torch.randn(6, 3, 4, 4)).shape == (6, 5)
    assert MLP(7, 2, hidden_sizes=[])(torch.randn(3, 7)).shape == (3, 2)


def test_mlp_names_an_unknown_activation() -> None:
    with pytest.raises(ValueError, match="'swish' is not one of"):
        MLP(4, 1, activation="swish")


def test_cnn_output_and_too_many_blocks() -> None:
    assert CNN([3, 32, 32], 10, channels=[8, 16, 32])(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="model.net.channels"):
        CNN([1, 8, 8], 10, channels=[8, 8, 8, 8])


def test_init_schemes_reset_weights_and_zero_biases() -> None:
    torch.manual_seed(0)
    net = MLP(4, 2, hidden_sizes=[8])
    before = net.layers[1].weight.detach().clone()
    init_weights(net, "kaiming")
    assert not torch.equal(before, net.layers[1].weight)
    assert torch.count_nonzero(net.layers[1].bias) == 0
    with pytest.raises(ValueError, match="init='orthogonal'"):
        init_weights(net, "orthogonal")
