"""Hydra launcher plugin: parallel jobs on one machine, each with its own GPUs and CPU cores."""
