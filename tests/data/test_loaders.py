"""The training loader goes on in the middle of an epoch from its saved state, in the same order."""

import io

import pytest
import torch
from torch.utils.data import TensorDataset

from litforge.data.loaders import EpochLengthGrouped, EpochShuffle, ResumableLoader, resumable_loader


def loader(sampler: EpochShuffle, workers: int) -> ResumableLoader:
    data = TensorDataset(torch.arange(len(sampler)))
    return resumable_loader(data, 4, sampler, num_workers=workers, persistent_workers=workers > 0)


def epoch(dl: ResumableLoader, number: int) -> list[list[int]]:
    dl.batch_sampler.sampler.set_epoch(number)
    return [batch[0].tolist() for batch in dl]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("grouped", [False, True])
def test_a_loader_resumed_mid_epoch_yields_the_rest_of_that_epoch(workers: int, grouped: bool) -> None:
    def sampler() -> EpochShuffle:
        return EpochLengthGrouped([i % 7 for i in range(22)], 4, seed=3) if grouped else EpochShuffle(22, seed=3)

    whole = loader(sampler(), workers)
    expected = [epoch(whole, 0), epoch(whole, 1)]
    assert expected[0] != expected[1] and sorted(sum(expected[1], [])) == list(range(22))

    killed = loader(sampler(), workers)
    killed.batch_sampler.sampler.set_epoch(1)
    batches = iter(killed)
    seen = [next(batches)[0].tolist() for _ in range(2)]
    buffer = io.BytesIO()
    torch.save(killed.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state == {"epoch": 1, "batches": 2}

    resumed = loader(sampler(), workers)
    resumed.load_state_dict(state)
    assert seen + epoch(resumed, 1) == expected[1]
    assert resumed.state_dict() == {"epoch": 1, "batches": 6}
    # the position applies to its own epoch only: the next one is whole
    assert epoch(resumed, 2) == epoch(loader(sampler(), workers), 2)


def test_a_saved_position_of_another_epoch_skips_nothing() -> None:
    dl = loader(EpochShuffle(10, seed=0), workers=0)
    dl.load_state_dict({"epoch": 0, "batches": 3})
    assert len(epoch(dl, 1)) == 3
