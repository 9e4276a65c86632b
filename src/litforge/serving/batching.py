"""Dynamic batching: requests that arrive while a forward pass runs share the next one, of up to
`max_batch_size` items, each waiting at most `max_wait_ms` for it to start; a request that finds the
model idle starts a pass at once. Passes run in a worker thread, so the event loop keeps accepting
requests."""

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
        self.executor: ThreadPoolExecutor | None = None
        self.queue: asyncio.Queue[Job] | None = None
        # jobs taken from the queue that did not fit the last batch (another top_k, too many items)
        self.pending: collections.deque[Job] = collections.deque()
        self.worker: asyncio.Task | None = None
        self.requests = 0
        self.batches = 0

    async def start(self) -> None:
        # one thread, so forward passes never compete for the cores; a new one each start, so an app
        # started again (its lifespan run twice) predicts again
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="litforge-predict")
        self.queue = asyncio.Queue()
        if self.enabled:
            self.worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
        if self.executor is not None:
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

    async def _next(self, timeout: float | None, busy: asyncio.Future | None = None) -> Job | None:
        """The next job: a queued one at once; else, with a timeout, one that comes within it while
        `busy` (the forward pass under way) runs, and None once that pass is done."""
        if self.pending:
            return self.pending.popleft()
        if timeout is None:
            return await self.queue.get()
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout <= 0 or busy is None or busy.done():
            return None
        get = asyncio.ensure_future(self.queue.get())
        await asyncio.wait({get, busy}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        try:
            # a job the get took as it was cancelled
            return await get
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise
            return None

    async def _gather(self, busy: asyncio.Future | None) -> list[Job]:
        """The first waiting job, and those that join it (same top_k, max_batch_size items in all): the
        ones queued, and while the last forward pass (`busy`) runs those that come within max_wait. An
        idle model does not wait: a request that finds nothing running starts a pass at once."""
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        group, size, deferred = [first], len(first.items), []
        deadline = loop.time() + self.max_wait
        while size < self.max_batch_size:
            job = await self._next(deadline - loop.time(), busy)
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
        # the next group gathers while the last one's forward pass runs; passes run one at a time
        running: asyncio.Task | None = None
        try:
            while True:
                group = await self._gather(running)
                if running is not None:
                    await running
                running = asyncio.create_task(self._run(group))
        finally:
            if running is not None:
                running.cancel()

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
