from litforge.nets.cnn import CNN
from litforge.nets.mlp import MLP
from litforge.nets.tabular import FTTransformer, ResMLP

__all__ = ["CNN", "MLP", "FTTransformer", "ResMLP"]
