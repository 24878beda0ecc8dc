"""Dynamic batching (S2): concurrent requests for one model are merged into one forward pass.

Requests wait in a bounded queue, one queue per kind of work and length bucket: a request
whose longest text has n tokens joins the first bucket whose edge is >= n, so one long text
never pads a batch of short ones (the padding made INT8 batched serving slower than unbatched).
A batch starts when it holds `max_batch_size` items or `max_batch_tokens` padded tokens (rows x
the bucket's longest text), or `max_wait_ms` after its oldest request came or the worker became
free (whichever is later); the first batch, and one after a batch of a single item, start at
once, so a lone client does not wait for company. Inference runs in one worker thread per
model, so the event loop keeps accepting (and rejecting) requests while a batch runs. When the
queue is full, `submit` raises QueueFull at once: callers answer 503 with Retry-After instead
of building an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
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
    tokens: int = 0  # tokens of its longest item (0: not counted)
    queued_at: float = field(default_factory=time.monotonic)


def length_bucket(tokens: int, edges: Sequence[int]) -> int:
    """Index of the first edge >= `tokens` (len(edges) past the last edge)."""
    return bisect.bisect_left(edges, tokens)


class DynamicBatcher:
    """Merges jobs with the same key (e.g. "classify") and length bucket into batches of up to
    `max_batch_size` items and `max_batch_tokens` padded tokens, and runs
    `run_batch(key, items)` in a worker thread; `run_batch` returns one result per item, in
    order. A job larger than either cap runs as a batch of its own. `length_buckets` are the
    bucket edges in tokens (empty: one bucket); `initializer` runs once in the worker thread
    (e.g. to set its intra-op thread count)."""

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[Hashable, int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        name: str = "model",
        max_batch_tokens: int = 0,
        length_buckets: Sequence[int] = (),
        initializer: Callable[[], None] | None = None,
    ):
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_ms / 1000
        self.max_batch_tokens = max_batch_tokens  # 0 = no cap
        self.length_buckets = sorted(length_buckets)
        self.max_queue = max_queue
        self.on_batch, self.on_depth = on_batch, on_depth
        # one queue per (key, length bucket)
        self._queues: dict[tuple[Hashable, int], deque[_Job]] = {}
        self._depth = 0  # queued jobs (requests)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"infer-{name}", initializer=initializer
        )
        self._closing = False
        self._batch_s = 0.05  # moving average of a batch's run time, for Retry-After
        self._free_since = 0.0  # when the worker finished its last batch
        self._last_items: dict[tuple, int] = {}  # items in each queue's last batch

    @property
    def depth(self) -> int:
        """Requests waiting (not yet running)."""
        return self._depth

    def start(self) -> None:
        """Start the batching loop on the running event loop (idempotent)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def submit(self, key: Hashable, items: list[Any], tokens: Sequence[int] = ()) -> asyncio.Future:
        """Queue one request's items (`tokens`: each item's token count, for the length
        bucket and the token cap; empty = not counted); the future resolves to their
        results. Raises QueueFull when `max_queue` requests wait, BatcherClosed while
        draining. Synchronous, so the check and the enqueue cannot interleave."""
        if self._closing:
            raise BatcherClosed("the model is being replaced")
        if self._depth >= self.max_queue:
            raise QueueFull(self._depth, self.retry_after_s())
        self.start()
        longest = max(tokens, default=0)
        job = _Job(key, list(items), asyncio.get_running_loop().create_future(), longest)
        bucket = length_bucket(longest, self.length_buckets)
        self._queues.setdefault((key, bucket), deque()).append(job)
        self._set_depth(self._depth + 1)
        self._wake.set()
        return job.future

    async def run(self, key: Hashable, items: list[Any], tokens: Sequence[int] = ()) -> list[Any]:
        """Submit and wait: the results of `items`, computed in some batch."""
        return await self.submit(key, items, tokens)

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

    def _oldest_queue(self) -> tuple[Hashable, int] | None:
        heads = [(q[0].queued_at, i, k) for i, (k, q) in enumerate(self._queues.items()) if q]
        return min(heads)[2] if heads else None

    def _fits(self, queue: deque[_Job]) -> tuple[int, bool]:
        """(how many jobs from the head of `queue` make the next batch, whether that batch
        is full: it reached a cap, or the next job would pass one)."""
        n = width = taken = 0
        for job in queue:
            rows, wide = n + len(job.items), max(width, job.tokens)
            over = rows > self.max_batch_size or (
                self.max_batch_tokens and rows * wide > self.max_batch_tokens
            )
            if over and taken:
                return taken, True
            n, width, taken = rows, wide, taken + 1
            if over:  # a job past a cap on its own runs alone
                return taken, True
        full = n >= self.max_batch_size or bool(
            self.max_batch_tokens and n * width >= self.max_batch_tokens
        )
        return taken, full

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            qkey = self._oldest_queue()
            if qkey is None:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            queue = self._queues[qkey]
            # wait for the batch to fill, at most max_wait after its oldest request came or
            # the worker became free (callers answered by the last batch can join this one);
            # not after a batch of one (or none): a lone client would only wait for nobody
            wait = self.max_wait_s if self._last_items.get(qkey, 1) > 1 else 0.0
            deadline = max(queue[0].queued_at, self._free_since) + wait
            while not self._fits(queue)[1] and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
            jobs = self._take(queue)
            if jobs:
                await self._run(loop, qkey, jobs)

    def _take(self, queue: deque[_Job]) -> list[_Job]:
        jobs = [queue.popleft() for _ in range(self._fits(queue)[0])]
        self._set_depth(self._depth - len(jobs))
        return [j for j in jobs if not j.future.done()]  # a caller may have given up

    async def _run(self, loop: asyncio.AbstractEventLoop, qkey: tuple, jobs: list[_Job]):
        key, items = qkey[0], [x for job in jobs for x in job.items]
        self._last_items[qkey] = len(items)
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
