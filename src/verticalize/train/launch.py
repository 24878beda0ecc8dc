"""`verticalize train --nproc N`: the same command in N processes on this machine, started
by torchrun's own engine (torch.distributed elastic, the `--standalone` rendezvous).
Each process runs the train stage; rank 0 writes, see train/distributed.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from uuid import uuid4

from verticalize.errors import TrainingError
from verticalize.train.distributed import LAUNCHED


def launch_train(
    config: Path, run_dir: Path, overrides: list[str], force: bool, nproc: int
) -> None:
    """Run `verticalize train` in `nproc` processes; returns when all of them finished.
    A process that fails has printed its own error; this raises with its exit code."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # we report
    args = ["-m", "verticalize", "train", str(config), "--run-dir", str(run_dir)]
    for item in overrides:
        args += ["--set", item]
    if force:
        args.append("--force")
    launch = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port, as `torchrun --standalone`
        max_restarts=0,
        monitor_interval=0.1,
    )
    os.environ[LAUNCHED] = "1"  # the workers inherit it: they leave the report to us
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads is None:  # split the cores between the processes instead of oversubscribing
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        elastic_launch(launch, sys.executable)(*args)
    except ChildFailedError as e:
        codes = {rank: f.exitcode for rank, f in sorted(e.failures.items())}
        failed = {rank: code for rank, code in codes.items() if code > 0}  # < 0: stopped by us
        first = next(iter(failed.values()), 1)
        raise LaunchFailed(
            f"train --nproc {nproc}: process(es) {sorted(failed or codes)} failed (exit code "
            f"{first}); their messages are above, the other processes were stopped. Fix: "
            "correct what they say and run the command again (it resumes from the last "
            "checkpoint).",
            first,
        ) from None
    finally:
        os.environ.pop(LAUNCHED, None)
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)


class LaunchFailed(TrainingError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
