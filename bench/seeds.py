"""Check the recipe, not the seed (E7): run an example's data, train and eval stages once per
seed and report the main metric's mean ± standard deviation for the model, for every
baseline and for the model's margin over the strongest baseline.

`seed` moves the split, the model's initialisation and the batch order together, so the
spread is what a team would see on another draw of its data, and the baselines (refit on each
split) vary too. A margin smaller than its standard deviation is noise.

    python bench/seeds.py examples/drug-reviews/verticalize.yaml --seeds 13 14 15 \
        --set eval.cv.enabled=false --set eval.robustness.enabled=false

Each seed runs in its own run folder under --work (default: a temporary folder). Last stdout
line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from verticalize import api  # noqa: E402
from verticalize.metrics import metric_value  # noqa: E402
from verticalize.plugins import get_task  # noqa: E402


def spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "values": [round(v, 4) for v in values],
    }


def one_seed(config: str, seed: int, sets: list[str], work: Path) -> dict:
    run_dir = work / f"seed-{seed}"
    overrides = [*sets, f"seed={seed}"]
    started = time.perf_counter()
    api.data(config, run_dir, overrides)
    api.train(config, run_dir, overrides)
    api.evaluate(config, run_dir, overrides)
    report = json.loads((run_dir / "eval" / "report.json").read_text("utf-8"))
    return {"report": report, "wall_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    if len(args.seeds) < 2:
        ap.error("give at least 2 seeds: a spread needs two runs")
    work = args.work or Path(tempfile.mkdtemp(prefix="verticalize-seeds-"))
    runs = [one_seed(args.config, s, args.sets, work) for s in args.seeds]
    reports = [r["report"] for r in runs]
    metric = reports[0].get("margin", {}).get("metric") or get_task(reports[0]["task"]).main_metric
    model = [metric_value(r["model"]["metrics"], metric) for r in reports]
    names = sorted(set.intersection(*(set(r.get("baselines", {})) for r in reports)))
    baselines = {
        n: spread([metric_value(r["baselines"][n]["metrics"], metric) for r in reports])
        for n in names
    }
    margins = [r["margin"]["delta"] for r in reports if "margin" in r]
    out = {
        "config": args.config,
        "seeds": args.seeds,
        "metric": metric,
        "model": spread(model),
        "baselines": baselines,
        "strongest_baseline": [r.get("strongest_baseline", {}).get("name") for r in reports],
        "margin": spread(margins) if len(margins) == len(reports) else None,
        "significant": [
            r["margin"]["ci_low"] > 0 or r["margin"]["ci_high"] < 0
            for r in reports
            if "margin" in r
        ],
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
    }
    print(json.dumps(out, ensure_ascii=False))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
