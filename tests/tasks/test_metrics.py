"""Training metrics scored once per epoch equal the per-step torchmetrics updates they replace."""

import pytest
import torch

from litforge.tasks.metrics import EpochPredictions, classification_metrics


def test_epoch_scores_match_per_step_updates_and_each_epoch_starts_empty() -> None:
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randint(0, 5, (n,), generator=generator), torch.randint(0, 5, (n,), generator=generator))
        for n in (7, 16, 3)
    ]
    per_step = classification_metrics(5)
    for preds, targets in batches:
        per_step.update(preds, targets)
    expected = per_step.compute()

    buffered, metrics = EpochPredictions(), classification_metrics(5)
    for preds, targets in batches:
        buffered.add(preds, targets)
    scores = buffered.score(metrics)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name].item() == pytest.approx(value.item())

    buffered.add(*batches[2])
    assert buffered.score(metrics)["acc"].item() == pytest.approx(
        (batches[2][0] == batches[2][1]).float().mean().item()
    )
    assert buffered.score(metrics) == {}
