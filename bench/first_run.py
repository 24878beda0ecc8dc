"""First-run time (U4): the README's first command, timed as a new user meets it.

Runs `verticalize run examples/drug-reviews/verticalize.yaml` in a fresh process, offline,
into a temporary run folder (its MLflow registry beside it), and reads the stage times the
run wrote into eval/report.json. Measure on a quiet machine: the target is wall_s <= 600 on
2 cores; the load average before and after is printed so a contended run can be told apart.

    python bench/first_run.py [--config examples/drug-reviews/verticalize.yaml] [--keep DIR]

The last line is the JSON {"wall_s", "macro_f1", "stages": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_EXAMPLE = ROOT / "examples" / "drug-reviews" / "verticalize.yaml"


def run_example(config: Path, workdir: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the child, the finished process)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VERTICALIZE_QUIET": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the registry goes to <workdir>/mlflow.db
    cmd = [sys.executable, "-m", "verticalize", "run", str(config), "--run-dir", "run"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick = time.perf_counter()
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=README_EXAMPLE)
    ap.add_argument("--keep", type=Path, help="Keep the run folder here (default: deleted).")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="first-run-"))
    try:
        load_before = os.getloadavg()
        wall, cpu, done = run_example(args.config.resolve(), workdir)
        load_after = os.getloadavg()
        sys.stderr.write(done.stderr[-6000:])
        if done.returncode != 0:
            print(json.dumps({"error": f"exit {done.returncode}", "wall_s": round(wall, 1)}))
            return 1
        report = json.loads((workdir / "run" / "eval" / "report.json").read_text("utf-8"))
        timing = report["timing"]
        result = {
            "cpu_s": round(cpu, 1),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
            "cores": os.cpu_count(),
            "eval_steps": timing.get("eval_steps", {}),
            "cv": {k: report["cv"].get(k) for k in ("k", "folds_run", "epochs", "seconds")}
            | {"macro_f1_mean": report["cv"]["macro_f1"]["mean"]}
            if "cv" in report
            else None,
            "wall_s": round(wall, 1),
            "macro_f1": report["model"]["metrics"]["macro_f1"],
            "stages": timing.get("stages", {}),
        }
        if args.keep:
            shutil.copytree(workdir / "run", args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
