from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.serving.models import file_predictions, sample_inputs, train_model, write_inputs


@pytest.fixture(scope="session")
def checkpoint_of(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`checkpoint_of(task)`: a tiny checkpoint of the task, trained on first use, on one thread (tiny
    models run faster so than fighting other processes for a few cores)."""
    trained: dict[str, Path] = {}

    def checkpoint(task: str) -> Path:
        if task not in trained:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                trained[task] = train_model(task, tmp_path_factory.mktemp(task))
            finally:
                torch.set_num_threads(threads)
        return trained[task]

    return checkpoint


@pytest.fixture(scope="session")
def expected_of(
    checkpoint_of: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, int | None], list[dict[str, Any]]]:
    """`expected_of(task, top_k)`: litforge.predict's records for the task's `sample_inputs`, written as files."""
    found: dict[tuple[str, int | None], list[dict[str, Any]]] = {}

    def expected(task: str, top_k: int | None = None) -> list[dict[str, Any]]:
        if (task, top_k) not in found:
            root = tmp_path_factory.mktemp(f"{task}_files")
            given = write_inputs(task, sample_inputs(task), root / "inputs")
            extra = [] if top_k is None else [f"top_k={top_k}"]
            found[task, top_k] = file_predictions(checkpoint_of(task), given, root / "logs", *extra)
        return found[task, top_k]

    return expected
