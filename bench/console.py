"""Page-load time of `verticalize console` over a folder with 50 runs (target: ≤ 300 ms a page).

The folder: one small real project (drug reviews, all-MiniLM-L6-v2, 1 epoch, registry on) run
end to end by the CLI, then copied 49 times (its YAML renamed, its run folder moved to match),
so 50 projects each have a full run folder (data, train, eval, export, model; hard links);
the MLflow
store gets 49 more tracked runs carrying the real run's metrics, so /runs lists 50. A real
console (the CLI, uvicorn) serves it; each page is fetched `--repeat` times over one
keep-alive connection after a warm-up. Baseline measured in the same run: the console's own
static CSS file (the server's floor for one request).

The console keeps parsed configs, MLflow query results and report verdicts while their files
are unchanged, so the first load of a page (`first_ms`, cold) costs more than the next ones.

Last stdout line: JSON with runs, repeat, per page {median_ms, max_ms, ratio_to_static,
first_ms},
the worst page and whether every page meets the target, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TARGET_MS = 300.0
HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

from console_util import make_project  # noqa: E402  (the tests' small real project)


def verticalize() -> str:
    return shutil.which("verticalize") or str(Path(sys.executable).parent / "verticalize")


def build(root: Path, runs: int) -> str:
    folder = make_project(root, "reviews-00", registry=True)
    subprocess.run(
        [verticalize(), "run", "verticalize.yaml"], cwd=folder, check=True, capture_output=True
    )
    for i in range(1, runs):
        name = f"reviews-{i:02d}"
        copy = root / name
        # hard links: 50 full run folders without 50 copies of the weights on disk
        shutil.copytree(
            folder, copy, ignore=shutil.ignore_patterns("checkpoints", "tb"), copy_function=os.link
        )
        yaml = copy / "verticalize.yaml"
        text = yaml.read_text().replace("name: reviews-00", f"name: {name}")
        yaml.unlink()  # a hard link: write a new file, not through to the original
        yaml.write_text(text)
        (copy / "runs" / "reviews-00").rename(copy / "runs" / name)
    return add_tracked_runs(root, runs - 1)


def add_tracked_runs(root: Path, n: int) -> str:
    """n more MLflow runs with the real run's params, metrics and tags (another run_dir)."""
    from mlflow.tracking import MlflowClient

    from verticalize.train.tracking import KIND_TAG, RUN_DIR_TAG, TRAINING

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    trainings = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.data.tags.get(KIND_TAG) == TRAINING
    ]
    real = trainings[0]
    for i in range(1, n + 1):
        name = f"reviews-{i:02d}"
        tags = {**real.data.tags, "mlflow.runName": name}
        if RUN_DIR_TAG in tags:
            tags[RUN_DIR_TAG] = str(root / name / "runs" / name)
        run = client.create_run(real.info.experiment_id, tags=tags)
        for k, v in real.data.params.items():
            client.log_param(run.info.run_id, k, v)
        for k, v in real.data.metrics.items():
            client.log_metric(run.info.run_id, k, v)
        client.set_terminated(run.info.run_id)
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(url: str, paths: list[str], repeat: int) -> tuple[dict, dict]:
    """({path: [ms of each repeat]}, {path: ms of the first, cold request})."""
    import httpx

    out: dict[str, list[float]] = {}
    cold: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=120) as c:
        for path in paths:
            tick = time.perf_counter()
            first = c.get(path)  # cold: the console's caches are empty for this page
            cold[path] = (time.perf_counter() - tick) * 1000
            if first.status_code != 200:
                raise SystemExit(f"{path}: HTTP {first.status_code}")
            times = []
            for _ in range(repeat):
                tick = time.perf_counter()
                c.get(path).raise_for_status()
                times.append((time.perf_counter() - tick) * 1000)
            out[path] = times
    return out, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build the folder here and keep it")
    args = parser.parse_args()
    load_before = os.getloadavg()
    root = args.keep or Path(tempfile.mkdtemp(prefix="console-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "reviews-00").is_dir():
        build(root, args.runs)
    port = free_port()
    server = subprocess.Popen(
        [verticalize(), "console", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        key = f"reviews-{args.runs // 2:02d}"
        paths = [
            "/static/console.css",
            "/",
            f"/project/{key}",
            f"/config/{key}",
            f"/data/{key}",
            f"/evaluation/{key}",
            f"/review/{key}",
            f"/try/{key}",
            "/runs",
            "/registry",
            "/playground",
        ]
        times, cold = measure(url, paths, args.repeat)
    finally:
        server.terminate()
        server.wait(10)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    floor = statistics.median(times["/static/console.css"])
    pages = {
        p: {
            "median_ms": round(statistics.median(t), 1),
            "max_ms": round(max(t), 1),
            "ratio_to_static": round(statistics.median(t) / floor, 1),
            "first_ms": round(cold[p], 1),
        }
        for p, t in times.items()
        if p != "/static/console.css"
    }
    worst = max(pages, key=lambda p: pages[p]["median_ms"])
    print(
        json.dumps(
            {
                "runs": args.runs,
                "repeat": args.repeat,
                "static_median_ms": round(floor, 2),
                "pages": pages,
                "worst_page": worst,
                "worst_median_ms": pages[worst]["median_ms"],
                "target_ms": TARGET_MS,
                "meets_target": all(v["median_ms"] <= TARGET_MS for v in pages.values()),
                "load_avg_before": [round(x, 2) for x in load_before],
                "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
