from litforge.nets.cnn import CNN
from litforge.nets.mlp import MLP

__all__ = ["CNN", "MLP"]
