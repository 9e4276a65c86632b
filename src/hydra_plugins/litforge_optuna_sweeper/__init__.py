"""Hydra sweeper plugin: Optuna studies with resumable storage."""
