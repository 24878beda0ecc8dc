"""Serving latency (issue 18): the batcher groups requests by token length and caps a batch's
padded tokens, a lone client is not kept waiting, an export whose INT8 model passed the gate
is served on ONNX Runtime by default (answers equal to torch's within tolerance), and the
model runs on the configured intra-op thread count. Real models, real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from serve_support import (
    LABELS,
    classifier_folder,
    live_server,
    ner_folder,
    settings,
    tiny_classifier_folder,
)

from verticalize.config import ServeConfig
from verticalize.serve.batching import DynamicBatcher, length_bucket
from verticalize.serve.engines import TORCH_BUCKETS, choose_runtime, load_engine, serve_threads


class Recorder:
    """run_batch that records its batches; holds the worker until released."""

    def __init__(self):
        self.batches: list[list] = []
        self.release, self.started = threading.Event(), threading.Event()

    def __call__(self, key, items):
        self.started.set()
        self.release.wait(30)
        self.batches.append(list(items))
        return list(items)


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_length_buckets_are_the_first_edge_at_or_above():
    edges = [8, 16, 32]
    assert [length_bucket(n, edges) for n in (1, 8, 9, 16, 17, 32, 33, 500)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    assert length_bucket(400, []) == 0  # no edges: one bucket


def test_a_batch_takes_requests_of_one_length_bucket():
    async def main():
        rec = Recorder()
        batcher = DynamicBatcher(rec, 32, 50, 100, length_buckets=[16, 32, 64])
        held = batcher.submit(("classify",), ["held"], [5])
        await asyncio.to_thread(rec.started.wait, 5)
        # short and long texts arrive interleaved while the worker is busy
        lengths = {"s1": 6, "L1": 50, "s2": 9, "L2": 60, "m1": 20, "s3": 12}
        futures = [batcher.submit(("classify",), [t], [n]) for t, n in lengths.items()]
        rec.release.set()
        results = await asyncio.gather(held, *futures)
        await batcher.close()
        return rec.batches, results

    batches, results = asyncio.run(main())
    assert batches == [["held"], ["s1", "s2", "s3"], ["L1", "L2"], ["m1"]]
    assert [r[0] for r in results] == ["held", "s1", "L1", "s2", "L2", "m1", "s3"]


def test_the_token_cap_bounds_padded_tokens_per_batch():
    async def main():
        rec = Recorder()
        batcher = DynamicBatcher(rec, 32, 50, 100, max_batch_tokens=100)
        held = batcher.submit(("a",), ["held"], [1])
        await asyncio.to_thread(rec.started.wait, 5)
        jobs = [batcher.submit(("a",), [f"t{i}"], [30]) for i in range(5)]
        wide = batcher.submit(("a",), ["w1", "w2"], [10, 90])  # 2 x 90 > 100: alone
        rec.release.set()
        await asyncio.gather(held, *jobs, wide)
        await batcher.close()
        return rec.batches

    batches = asyncio.run(main())
    # rows x the longest text <= 100: three texts of 30 tokens, then two with the next one
    assert batches == [["held"], ["t0", "t1", "t2"], ["t3", "t4"], ["w1", "w2"]]


def test_a_lone_request_after_a_batch_of_one_does_not_wait_for_company():
    async def main():
        rec = Recorder()
        rec.release.set()
        batcher = DynamicBatcher(rec, 32, max_wait_ms=60_000, max_queue=10)
        first = await asyncio.wait_for(batcher.run(("a",), ["one"], [3]), 10)
        second = await asyncio.wait_for(batcher.run(("a",), ["two"], [3]), 10)
        await batcher.close()
        return first, second

    assert asyncio.run(main()) == (["one"], ["two"])  # a 60 s wait would time out


def test_http_requests_of_different_lengths_run_in_separate_batches(tmp_path):
    serve = settings(tmp_path, max_batch_size=32, max_wait_ms=5, length_buckets=[16, 64])
    long_text = " ".join(["a long review of a drug that helped with my pain"] * 3)  # > 16
    with live_server(classifier_folder(), serve) as (url, app):
        slot = app.state.serve.router.champion
        entered, release, real = threading.Event(), threading.Event(), slot.batcher.run_batch

        def held(key, items):
            entered.set()
            release.wait(60)
            return real(key, items)

        slot.batcher.run_batch = held
        post = lambda text: httpx.post(url + "/v1/classify", json={"input": text}, timeout=60)  # noqa: E731
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(post, "first")
            assert entered.wait(30)
            rest = [pool.submit(post, t) for t in ("good", "bad", long_text, long_text + " again")]
            for _ in range(5000):
                if httpx.get(url + "/readyz").json()["models"][0]["queue"] == 4:
                    break
            release.set()
            answers = [f.result() for f in [first, *rest]]
        metrics = httpx.get(url + "/metrics").text
    assert [r.status_code for r in answers] == [200] * 5
    count = _sample(metrics, "verticalize_batch_size_count")
    total = _sample(metrics, "verticalize_batch_size_sum")
    assert (count, total) == (3, 5)  # the held one, the two short, the two long


def _sample(metrics: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny classifier with its INT8 ONNX model and a verticalize.json saying the export
    passed its gate (published), as `verticalize export` writes it."""
    from verticalize.export.onnx import export_classifier, quantize_int8

    folder = tmp_path_factory.mktemp("export") / "model"
    shutil.copytree(tiny_classifier_folder(), folder)
    fp32 = export_classifier(folder, folder / "onnx" / "model.onnx")
    quantize_int8(fp32, folder / "onnx" / "model.int8.onnx")
    info = {"task": "classification", "version": "tiny-1", "labels": LABELS}
    info |= {"onnx": "onnx/model.onnx", "onnx_int8": "onnx/model.int8.onnx", "published": True}
    (folder / "verticalize.json").write_text(json.dumps(info), "utf-8")
    return folder


def test_auto_serves_a_published_int8_export_on_onnx_and_answers_like_torch(
    exported, tmp_path, restore_threads
):
    texts = ["short", "a somewhat longer review of a drug", "it made me dizzy for days"]
    assert ServeConfig().runtime == "auto"
    with live_server(exported, settings(tmp_path)) as (url, app):
        engine = app.state.serve.router.champion.engine
        batcher = app.state.serve.router.champion.batcher
        ready = httpx.get(url + "/readyz").json()
        onnx_data = httpx.post(url + "/v1/classify", json={"input": texts}).json()["data"]
    assert engine.runtime == "onnx" and ready["models"][0]["runtime"] == "onnx"
    # no padding on ONNX Runtime: one length bucket per token count
    assert batcher.length_buckets == list(range(1, engine.max_tokens + 1))
    with live_server(exported, settings(tmp_path, runtime="torch")) as (url, app):
        assert app.state.serve.router.champion.engine.runtime == "torch"
        assert app.state.serve.router.champion.batcher.length_buckets == list(TORCH_BUCKETS)
        torch_data = httpx.post(url + "/v1/classify", json={"input": texts}).json()["data"]
    for a, b in zip(onnx_data, torch_data, strict=True):
        assert [a["probs"][lab] for lab in LABELS] == pytest.approx(
            [b["probs"][lab] for lab in LABELS], abs=0.02
        )


def test_auto_keeps_torch_when_the_export_did_not_pass_or_has_no_onnx(exported, tmp_path):
    refused = tmp_path / "refused"
    shutil.copytree(exported, refused)
    info = json.loads((refused / "verticalize.json").read_text("utf-8"))
    (refused / "verticalize.json").write_text(json.dumps(info | {"published": False}), "utf-8")
    assert choose_runtime(exported, "classification") == "onnx"
    assert choose_runtime(refused, "classification") == "torch"
    assert choose_runtime(tiny_classifier_folder(), "classification") == "torch"  # no export
    assert choose_runtime(exported, "classification", "torch") == "torch"  # explicit wins
    assert choose_runtime(ner_folder(), "ner") == "torch"  # NER has no ONNX engine


def test_the_model_runs_on_the_configured_intra_op_threads(exported, restore_threads):
    assert serve_threads(3) == 3
    assert 1 <= serve_threads(0) <= 8
    engine = load_engine(exported, "classification", "auto", threads=1)
    assert (engine.runtime, engine.threads, engine.onnx.threads) == ("onnx", 1, 1)
    assert torch.get_num_threads() == 1
    options = engine.onnx.session.get_session_options()
    assert options.intra_op_num_threads == 1
