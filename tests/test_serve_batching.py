"""Dynamic batching: concurrent requests merge into one forward pass, batches respect their
size and key, the queue is bounded (503 + Retry-After, never a backlog), and closing drains
what is queued. The batcher is driven with a plain function and, over HTTP, the real model;
a threading.Event holds the worker so that requests pile up deterministically."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_support import classifier_folder, live_server, settings

from verticalize.serve.batching import BatcherClosed, DynamicBatcher, QueueFull


class Recorder:
    """run_batch that records its batches and can hold the worker until released."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[tuple] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, key, items):
        self.started.set()
        self.release.wait(30)
        self.batches.append((key, list(items)))
        if "boom" in items:
            raise ValueError("boom")
        return [f"{key[0]}:{x}" for x in items]


async def _until(condition) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def test_concurrent_jobs_merge_up_to_max_batch_size_and_keep_their_results():
    async def main():
        rec = Recorder(hold_first=True)
        batcher = DynamicBatcher(rec, max_batch_size=4, max_wait_ms=50, max_queue=100)
        first = batcher.submit(("a",), [0])
        await asyncio.to_thread(rec.started.wait, 5)  # the worker holds job 0
        later = [batcher.submit(("a",), [i]) for i in range(1, 6)]
        big = batcher.submit(("a",), [10, 11, 12, 13, 14, 15])  # larger than a batch
        other = batcher.submit(("b",), ["x", "y"])
        assert batcher.depth == 7
        rec.release.set()
        results = await asyncio.gather(first, *later, big, other)
        await batcher.close()
        return rec.batches, results

    batches, results = asyncio.run(main())
    assert [b[1] for b in batches] == [[0], [1, 2, 3, 4], [5], [10, 11, 12, 13, 14, 15], ["x", "y"]]
    assert results[0] == ["a:0"] and results[3] == ["a:3"] and results[-1] == ["b:x", "b:y"]
    assert results[6] == [f"a:{i}" for i in range(10, 16)]


def test_a_full_queue_refuses_at_once_with_a_retry_time():
    async def main():
        rec = Recorder(hold_first=True)
        depths: list[int] = []
        batcher = DynamicBatcher(rec, 8, 0, max_queue=2, on_depth=depths.append)
        running = batcher.submit(("a",), [0])
        await asyncio.to_thread(rec.started.wait, 5)
        queued = [batcher.submit(("a",), [1]), batcher.submit(("a",), [2])]
        with pytest.raises(QueueFull) as refused:
            batcher.submit(("a",), [3])
        rec.release.set()
        await asyncio.gather(running, *queued)
        await batcher.close()
        with pytest.raises(BatcherClosed):
            batcher.submit(("a",), [4])
        return refused.value, depths

    refused, depths = asyncio.run(main())
    assert refused.depth == 2 and refused.retry_after_s >= 1
    assert max(depths) == 2 and depths[-1] == 0


def test_an_error_reaches_every_request_of_its_batch_only():
    async def main():
        rec = Recorder(hold_first=True)
        batcher = DynamicBatcher(rec, 8, 20, 10)
        first = batcher.submit(("a",), ["ok"])
        await asyncio.to_thread(rec.started.wait, 5)
        doomed = [batcher.submit(("a",), ["boom"]), batcher.submit(("a",), ["fine"])]
        rec.release.set()
        assert await first == ["a:ok"]
        outcomes = await asyncio.gather(*doomed, return_exceptions=True)
        after = await batcher.run(("a",), ["later"])
        await batcher.close()
        return outcomes, after

    outcomes, after = asyncio.run(main())
    assert all(isinstance(o, ValueError) for o in outcomes)
    assert after == ["a:later"]  # the worker survived


def test_close_finishes_queued_work():
    async def main():
        rec = Recorder(hold_first=True)
        batcher = DynamicBatcher(rec, 2, 1000, 10)
        futures = [batcher.submit(("a",), [i]) for i in range(5)]
        await asyncio.to_thread(rec.started.wait, 5)
        closing = asyncio.ensure_future(batcher.close())
        rec.release.set()
        await closing
        return [f.result() for f in futures]

    assert asyncio.run(main()) == [[f"a:{i}"] for i in range(5)]


@pytest.fixture()
def held_server(tmp_path):
    """A MiniLM server whose worker thread waits for `release` before each batch."""
    serve = settings(tmp_path, max_queue=4, max_batch_size=32, max_wait_ms=5)
    with live_server(classifier_folder(), serve) as (url, app):
        slot = app.state.serve.router.champion
        entered, release, real = threading.Event(), threading.Event(), slot.batcher.run_batch

        def held(key, items):
            entered.set()
            release.wait(60)
            return real(key, items)

        slot.batcher.run_batch = held
        yield url, entered, release


def _wait_queue(url: str, depth: int) -> None:
    for _ in range(5000):
        if httpx.get(url + "/readyz").json()["models"][0]["queue"] == depth:
            return
    raise AssertionError(f"queue never reached {depth}")


def _post(url: str, text: str) -> httpx.Response:
    return httpx.post(url + "/v1/classify", json={"input": text}, timeout=60)


def test_concurrent_http_requests_share_one_forward_pass(held_server):
    url, entered, release = held_server
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(_post, url, "first")
        assert entered.wait(30)  # taken by the held worker…
        rest = [pool.submit(_post, url, f"text {i}") for i in range(4)]
        _wait_queue(url, 4)  # …while four more wait
        release.set()
        answers = [f.result() for f in [first, *rest]]
    assert all(r.status_code == 200 for r in answers)
    metrics = httpx.get(url + "/metrics").text
    count = _sample(metrics, "verticalize_batch_size_count")
    total = _sample(metrics, "verticalize_batch_size_sum")
    assert (count, total) == (2, 1 + 4)  # the held request alone, then the four together


def test_a_full_queue_answers_503_with_retry_after(held_server):
    url, entered, release = held_server
    with ThreadPoolExecutor(8) as pool:
        running = pool.submit(_post, url, "running")
        assert entered.wait(30)
        queued = [pool.submit(_post, url, f"queued {i}") for i in range(4)]
        _wait_queue(url, 4)
        refused = _post(url, "one too many")
        release.set()
        served = [f.result() for f in [running, *queued]]
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "queue_full"
    assert [r.status_code for r in served] == [200] * 5
    metrics = httpx.get(url + "/metrics").text
    assert 'verticalize_rejected_requests_total{reason="queue_full"} 1.0' in metrics


def _sample(metrics: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))
