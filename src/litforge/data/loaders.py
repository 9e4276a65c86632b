"""Training loaders that a resumed run continues in the middle of an epoch: the same order, with the
batches it had already trained on skipped."""

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from litforge.utils.errors import UserError


class EpochShuffle(Sampler[int]):
    """A shuffle that depends on (seed, epoch) only: Lightning calls `set_epoch`, so a run
    resumed in epoch k sees the same order as one that never stopped."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.size, generator=self.generator()).tolist())

    def __len__(self) -> int:
        return self.size


class EpochLengthGrouped(EpochShuffle):
    """Batches of similar lengths (less padding), shuffled by (seed, epoch) like `EpochShuffle`;
    the grouping is transformers' `get_length_grouped_indices`, as its `LengthGroupedSampler` does it."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        super().__init__(len(lengths), seed)
        self.lengths, self.batch_size = list(lengths), batch_size

    def __iter__(self) -> Iterator[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator()))


class SkippingBatches(BatchSampler):
    """PyTorch's BatchSampler, but a pass starts `skip` batches in: only their indices are drawn,
    nothing of them is loaded. Its loader sets `skip` for each pass (a worker pool iterates it twice
    when it starts, so the count must not be used up by the first)."""

    skip = 0

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(super().__iter__(), self.skip, None)


class ResumableLoader(DataLoader):
    """A training DataLoader with the `state_dict`/`load_state_dict` that Lightning saves in every
    checkpoint and loads at resume: the epoch and how many of its batches were handed out (plain
    ints, so a weights-only load reads them). A resumed epoch goes on with the batch after those.

    No `__init__`: Lightning re-creates a loader from its constructor's arguments (e.g. to add a
    DistributedSampler), so the state lives in class-level defaults until it is set.
    """

    _position: tuple[int | None, int] = (None, 0)
    _resume_at: tuple[int | None, int] | None = None

    def state_dict(self) -> dict[str, int | None]:
        epoch, batches = self._position
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_at = (state["epoch"], state["batches"])

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        # runs at the first batch, after Lightning's set_epoch (which comes after its iter())
        epoch = getattr(self.batch_sampler.sampler, "epoch", None)
        resume, self._resume_at = self._resume_at, None
        skip = resume[1] if resume is not None and resume[0] == epoch else 0
        self.batch_sampler.skip = skip
        self._position = (epoch, skip)
        for batch in super().__iter__():
            # counted before it is handed out: a checkpoint saved during this batch's step includes it
            self._position = (epoch, self._position[1] + 1)
            yield batch


def resumable_loader(
    dataset: Dataset, batch_size: int, sampler: EpochShuffle, trainer: L.Trainer | None = None, **kwargs: Any
) -> ResumableLoader:
    """The training loader of a data module: shuffled by `sampler`, resumable mid-epoch. Under
    `trainer.overfit_batches` in order instead: Lightning turns shuffling off only in loaders whose
    `sampler` shuffles, and a loader built from a batch sampler reports a sequential one."""
    order: Sampler[int] = SequentialSampler(dataset) if trainer is not None and trainer.overfit_batches else sampler
    return ResumableLoader(dataset, batch_sampler=SkippingBatches(order, batch_size, drop_last=False), **kwargs)


# the keys of a streamed batch that say which worker made it and how many examples its shard has produced
WORKER, PRODUCED = "stream_worker", "stream_produced"


class StreamLoader(DataLoader):
    """A training DataLoader over an endless stream (litforge.data.text.mlm_stream.MaskedLMStream)
    with the `state_dict`/`load_state_dict` Lightning checkpoints: how many examples each loader
    worker's shard had produced for the batches trained on. A resumed stream skips those.

    Lightning fetches a batch ahead, so a batch counts once its training step is done (`batch_done`,
    which LoaderPosition calls), not when the loader hands it out. Lightning fetches an endless
    loader's first batch as soon as it builds it, before callbacks see the checkpoint, so the data
    module keeps the position in its own state and loads it into the loader it builds. Every rank
    takes one batch a step and a rank's workers hand out batches in turn, so the counts are the same
    on every rank: the checkpoint (rank 0's) holds every rank's position.
    """

    _produced: tuple[int, ...] = ()
    _pending: tuple[tuple[int, ...], ...] = ()
    _resume_at: tuple[int, ...] | None = None

    def _workers(self) -> int:
        return max(1, self.num_workers)

    def state_dict(self) -> dict[str, Any]:
        produced = list(self._produced) or [0] * self._workers()
        return {"world_size": self.dataset.world_size, "workers": self._workers(), "produced": produced}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "produced" not in state:
            return
        layout, now = (state["world_size"], state["workers"]), (self.dataset.world_size, self._workers())
        if layout != now:
            raise UserError(
                f"this checkpoint streamed its training text in {layout[0]} rank(s) x {layout[1]} shard(s) per rank "
                f"(devices x data.num_workers, at least 1), this run in {now[0]} x {now[1]}: resume with the "
                "checkpoint's trainer.devices and data.num_workers, so each shard goes on where it stopped."
            )
        self._resume_at = tuple(state["produced"])

    def batch_done(self) -> None:
        """The oldest batch handed out has been trained on."""
        if self._pending:
            self._produced, *rest = self._pending
            self._pending = tuple(rest)

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        # a batch fetched ahead by an earlier iterator but never trained on is made again
        resume, self._resume_at = self._resume_at, None
        if resume is not None:
            self._produced = resume
        self._pending = ()
        self.dataset.start = list(self._produced)
        produced = list(self._produced) or [0] * self._workers()
        for batch in super().__iter__():
            produced[batch.pop(WORKER)] = batch.pop(PRODUCED)
            self._pending = (*self._pending, tuple(produced))
            yield batch


def own_generator(seed: int) -> torch.Generator:
    """A DataLoader's `generator`, for every loader of a data module. Without one, each new iterator
    of a loader draws its workers' base seed from the global RNG; a resumed run makes its iterators
    at other moments than an uninterrupted one (no sanity check, persistent workers started later),
    so dropout and augmentation would draw from a shifted RNG."""
    return torch.Generator().manual_seed(seed)


class LoaderPosition(L.Callback):
    """Carries the training loader's position in the checkpoint and hands it back at resume.

    Lightning restores a stateful training loader only when it builds the loader after loading the
    checkpoint; a task's `configure_optimizers` that asks for `trainer.estimated_stepping_batches`
    (the length of an LR schedule) makes it build the loader before, and the saved position is
    dropped (Lightning issue #20550). The loader reads it at its first batch, after `on_train_start`.
    A StreamLoader gets its position from its data module instead, and counts a batch when its step ends.
    """

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._saved: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        loader = self._trainer.train_dataloader if self._trainer is not None else None
        return loader.state_dict() if isinstance(loader, ResumableLoader | StreamLoader) else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved = state or None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, StreamLoader):
            loader.batch_done()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if self._saved is not None and isinstance(loader, ResumableLoader):
            loader.load_state_dict(self._saved)
        self._saved = None
