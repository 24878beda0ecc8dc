"""`verticalize runs`: the trainings an MLflow store tracked, newest first, with their key
metrics (read from the tags and summary/*, test/* metrics that train/tracking.py logs)."""

from __future__ import annotations

import time
from pathlib import Path

from verticalize.config import load_config
from verticalize.errors import RegistryError
from verticalize.mlflow_store import RUN_DIR_TAG, mlflow_errors, open_client, tracking_uri
from verticalize.runfolder import RunFolder
from verticalize.train.tracking import (
    BEST_TAG,
    KIND_TAG,
    MAIN_METRIC_TAG,
    TRAINING,
    tracking_target,
)

ONLY_TRAININGS = f"tags.`{KIND_TAG}` = '{TRAINING}'"  # registry runs carry models, not curves


def store_uri(path: Path) -> str:
    """The store the runs of `path` track to: a verticalize.yaml (train.mlflow_uri, else the
    registry's) or a runs folder ($MLFLOW_TRACKING_URI, else <folder>/mlflow.db)."""
    if path.is_file():
        cfg = load_config(path)
        return tracking_target(cfg, RunFolder(cfg))[0]
    return tracking_uri(None, path.resolve())


def list_runs(uri: str, experiment: str | None = None) -> list[dict]:
    """One row per tracked training in the store at `uri` (every experiment, or the one
    named): run_id, run_name, experiment, status, started, task, base_model, method, steps,
    train_loss, best_metric, best_value, main_metric, test {metric: value}, train_seconds,
    run_dir, registered. No store yet: an empty list (nothing is created)."""
    client = open_client(uri, create=False)
    if client is None:
        return []
    with mlflow_errors(uri):
        experiments = _experiments(client, experiment)
        names = {e.experiment_id: e.name for e in experiments}
        found, token = [], None
        while names:
            page = client.search_runs(
                list(names),
                filter_string=ONLY_TRAININGS,
                order_by=["attributes.start_time DESC"],
                max_results=1000,
                page_token=token,
            )
            found += list(page)
            token = page.token
            if not token:
                break
    return [_row(run, names[run.info.experiment_id]) for run in found]


def _experiments(client, name: str | None) -> list:
    if name is None:
        return list(client.search_experiments(max_results=50000))
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage != "active":
        known = sorted(e.name for e in client.search_experiments(max_results=50000))
        raise RegistryError(
            f"--experiment: no experiment {name!r} in this MLflow store; it has "
            f"{', '.join(repr(n) for n in known) or 'none'}. Fix: use one of those names "
            "(an experiment is named after the project's `name` or train.mlflow_experiment)."
        )
    return [exp]


def _row(run, experiment: str) -> dict:
    tags, metrics = run.data.tags, run.data.metrics
    best = tags.get(BEST_TAG)
    main = tags.get(MAIN_METRIC_TAG)
    loss = metrics.get("summary/final_train_loss", metrics.get("train/loss"))
    registered = tags.get("registered_model")
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment": experiment,
        "status": run.info.status,
        "started": _when(run.info.start_time),
        "task": tags.get("task"),
        "base_model": tags.get("base_model"),
        "method": tags.get("method"),
        "steps": _int(metrics.get("summary/steps")),
        "train_loss": loss,
        "best_metric": best,
        "best_value": metrics.get(f"summary/best_{best}") if best else None,
        "main_metric": main,
        "test": {
            k.removeprefix("test/"): v
            for k, v in sorted(metrics.items())
            if k.startswith("test/") and ":" not in k  # per-class scores stay in MLflow
        },
        "train_seconds": metrics.get("summary/train_seconds"),
        "run_dir": tags.get(RUN_DIR_TAG),
        "registered": f"{registered}/{tags.get('registered_version')}" if registered else None,
    }


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
