"""Dynamic batching (S2): concurrent requests for one model are merged into one forward pass.

Requests wait in a bounded queue; a batch starts when it holds `max_batch_size` items, or
`max_wait_ms` after its oldest request came or the worker became free (whichever is later). Inference runs in one worker thread per model, so
the event loop keeps accepting (and rejecting) requests while a batch runs. When the queue is
full, `submit` raises QueueFull at once: callers answer 503 with Retry-After instead of
building an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

RunBatch = Callable[[Hashable, list[Any]], list[Any]]


class QueueFull(Exception):
    """The model's queue holds `max_queue` requests; retry after `retry_after_s` seconds."""

    def __init__(self, depth: int, retry_after_s: int):
        super().__init__(f"the model's queue is full ({depth} requests waiting)")
        self.depth, self.retry_after_s = depth, retry_after_s


class BatcherClosed(Exception):
    """The batcher is draining for a model swap or shutdown and takes no new work."""


@dataclass
class _Job:
    key: Hashable
    items: list[Any]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Merges jobs with the same key (e.g. "classify") into batches of up to `max_batch_size`
    items and runs `run_batch(key, items)` in a worker thread; `run_batch` returns one result
    per item, in order. A job larger than `max_batch_size` runs as a batch of its own."""

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[Hashable, int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        name: str = "model",
    ):
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch, self.on_depth = on_batch, on_depth
        self._queues: dict[Hashable, deque[_Job]] = {}
        self._items: dict[Hashable, int] = {}  # queued items per key
        self._depth = 0  # queued jobs (requests)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{name}")
        self._closing = False
        self._batch_s = 0.05  # moving average of a batch's run time, for Retry-After
        self._free_since = 0.0  # when the worker finished its last batch

    @property
    def depth(self) -> int:
        """Requests waiting (not yet running)."""
        return self._depth

    def start(self) -> None:
        """Start the batching loop on the running event loop (idempotent)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def submit(self, key: Hashable, items: list[Any]) -> asyncio.Future:
        """Queue one request's items; the future resolves to their results. Raises QueueFull
        when `max_queue` requests wait, BatcherClosed while draining. Synchronous, so the
        check and the enqueue cannot interleave with another request."""
        if self._closing:
            raise BatcherClosed("the model is being replaced")
        if self._depth >= self.max_queue:
            raise QueueFull(self._depth, self.retry_after_s())
        self.start()
        job = _Job(key, list(items), asyncio.get_running_loop().create_future())
        self._queues.setdefault(key, deque()).append(job)
        self._items[key] = self._items.get(key, 0) + len(job.items)
        self._set_depth(self._depth + 1)
        self._wake.set()
        return job.future

    async def run(self, key: Hashable, items: list[Any]) -> list[Any]:
        """Submit and wait: the results of `items`, computed in some batch."""
        return await self.submit(key, items)

    def retry_after_s(self) -> int:
        """Seconds until the current backlog has probably run (at least 1)."""
        batches = self._depth / self.max_batch_size + 1
        return max(1, math.ceil(batches * self._batch_s))

    async def close(self) -> None:
        """Stop taking work, finish every queued job, then stop the worker thread."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            await self._task
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    # ------------------------------------------------------------ the loop

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        if self.on_depth is not None:
            self.on_depth(depth)

    def _oldest_key(self) -> Hashable | None:
        heads = [(q[0].queued_at, i, k) for i, (k, q) in enumerate(self._queues.items()) if q]
        return min(heads)[2] if heads else None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = self._oldest_key()
            if key is None:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # wait for the batch to fill, at most max_wait after its oldest request came or
            # the worker became free: callers answered by the last batch can join this one
            deadline = max(self._queues[key][0].queued_at, self._free_since) + self.max_wait_s
            while self._items[key] < self.max_batch_size and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
            jobs = self._take(key)
            if jobs:
                await self._run(loop, key, jobs)

    def _take(self, key: Hashable) -> list[_Job]:
        queue, jobs, n = self._queues[key], [], 0
        while queue and (not jobs or n + len(queue[0].items) <= self.max_batch_size):
            job = queue.popleft()
            n += len(job.items)
            self._items[key] -= len(job.items)
            jobs.append(job)
        self._set_depth(self._depth - len(jobs))
        return [j for j in jobs if not j.future.done()]  # a caller may have given up

    async def _run(self, loop: asyncio.AbstractEventLoop, key: Hashable, jobs: list[_Job]):
        items = [x for job in jobs for x in job.items]
        started = time.monotonic()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, key, items)
            if len(results) != len(items):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(items)}")
        except Exception as e:  # every request of the batch learns what went wrong
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        finally:
            self._free_since = time.monotonic()
            self._batch_s = 0.8 * self._batch_s + 0.2 * (self._free_since - started)
            if self.on_batch is not None:
                self.on_batch(key, len(items))
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)
