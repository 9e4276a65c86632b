"""litforge: five deep-learning tasks on PyTorch Lightning, composed by Hydra."""
