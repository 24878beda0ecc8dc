"""Where the per-record steps run: in this process (default) or on Ray Data
(`data.engine: ray`), which spreads them over the cores or nodes of a Ray cluster. Both
yield outcomes in input order, so the result of a run does not depend on the engine."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

from verticalize.config import DataConfig
from verticalize.data.process import Outcome, RecordProcessor
from verticalize.errors import ConfigError


def map_records(processor: RecordProcessor, path: Path, cfg: DataConfig) -> Iterator[Outcome]:
    """Apply `processor` to every JSON line of `path`, in order."""
    if cfg.engine == "ray":
        yield from _map_ray(processor, path, cfg)
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield processor(json.loads(line))


class _Batch:
    """Ray map_batches callable: JSON lines in, pickled outcomes out."""

    def __init__(self, processor: RecordProcessor):
        self.processor = processor

    def __call__(self, batch: dict) -> dict:
        out = [pickle.dumps(self.processor(json.loads(line))) for line in batch["text"]]
        return {"outcome": out}


def _map_ray(processor: RecordProcessor, path: Path, cfg: DataConfig) -> Iterator[Outcome]:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(
            "data.engine: ray needs Ray Data. Fix: pip install 'ray[data]>=2.9,<3' "
            "(or set data.engine: local)."
        ) from None
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
        ray.init(
            address=cfg.ray.address,
            num_cpus=cfg.ray.num_cpus if cfg.ray.address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # same output as the local engine
        ctx.enable_progress_bars = False
        ds = ray.data.read_text(str(path)).map_batches(
            _Batch(processor), batch_size=256, batch_format="numpy"
        )
        for row in ds.iter_rows():
            yield pickle.loads(row["outcome"])
    finally:
        if started:
            ray.shutdown()
