"""Dynamic batching: requests that arrive within `max_wait_ms` of each other share one forward pass of
up to `max_batch_size` items, run in a worker thread so the event loop keeps accepting requests."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PredictFn = Callable[[list[Any], int | None, list[str] | None], list[dict[str, Any]]]


@dataclass
class Job:
    items: list[Any]
    top_k: int | None
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Hands requests to `predict(items, top_k, ids)`, one call at a time. Batching is off with
    `max_batch_size=1` or `max_wait_ms=0`: each request is then its own call."""

    def __init__(self, predict: PredictFn, max_batch_size: int, max_wait_ms: float) -> None:
        self.predict, self.max_batch_size, self.max_wait = predict, max_batch_size, max_wait_ms / 1000
        self.enabled = max_batch_size > 1 and max_wait_ms > 0
        # one thread: forward passes never compete with each other for the cores
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="litforge-predict")
        self.queue: asyncio.Queue[Job] | None = None
        # jobs taken from the queue that did not fit the last batch (another top_k, too many items)
        self.pending: collections.deque[Job] = collections.deque()
        self.worker: asyncio.Task | None = None
        self.requests = 0
        self.batches = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        if self.enabled:
            self.worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, items: list[Any], top_k: int | None) -> list[dict[str, Any]]:
        """The records of `items`, once their forward pass ran (raises what `predict` raised for them)."""
        self.requests += 1
        loop = asyncio.get_running_loop()
        if not self.enabled or self.queue is None:
            self.batches += 1
            return await loop.run_in_executor(self.executor, self.predict, items, top_k, None)
        job = Job(items, top_k, loop.create_future())
        await self.queue.put(job)
        return await job.future

    async def _next(self, timeout: float | None) -> Job | None:
        if self.pending:
            return self.pending.popleft()
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _gather(self) -> list[Job]:
        """The first waiting job, and those that join it within max_wait: same top_k, max_batch_size items."""
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        group, size, deferred = [first], len(first.items), []
        deadline = loop.time() + self.max_wait
        while size < self.max_batch_size:
            job = await self._next(deadline - loop.time())
            if job is None:
                break
            if job.top_k == first.top_k and size + len(job.items) <= self.max_batch_size:
                group.append(job)
                size += len(job.items)
            else:
                deferred.append(job)
        self.pending.extendleft(reversed(deferred))
        return group

    async def _work(self) -> None:
        while True:
            await self._run(await self._gather())

    async def _run(self, group: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        items = [item for job in group for item in job.items]
        # each request's items are numbered from 0, as if it had been predicted alone
        ids = [str(i) for job in group for i in range(len(job.items))]
        self.batches += 1
        try:
            records = await loop.run_in_executor(self.executor, self.predict, items, group[0].top_k, ids)
        except Exception as err:
            if len(group) == 1:
                _settle(group[0], error=err)
                return
            # one bad request must not fail the others: each is run alone to find it
            for job in group:
                await self._run([job])
            return
        start = 0
        for job in group:
            _settle(job, records[start : start + len(job.items)])
            start += len(job.items)


def _settle(job: Job, records: list[dict[str, Any]] | None = None, error: BaseException | None = None) -> None:
    # a client that went away has its future cancelled already
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(records)
