"""MLflow experiment tracking (T5): params, per-step metrics and the run's files, one MLflow
run per training of a run folder.

Where: train.mlflow_uri, else the registry's store (registry.tracking_uri, $MLFLOW_TRACKING_URI,
sqlite:///<runs folder>/mlflow.db). Experiment: train.mlflow_experiment, else `name`.
Identity: <run>/train/tracking.json names the MLflow run of the training in train/. A resumed
training finds it there and logs on into the same MLflow run; a retrain (new config or data, or
--force) empties train/ and so starts a new MLflow run; eval/export results go to the run of
the training they evaluate (`log_pipeline`).
Metrics are sent by a background thread in batches (every FLUSH_S seconds, at each evaluation,
at the end), so the training loop never waits on MLflow; a failing store warns once and
training goes on (train/metrics.jsonl keeps everything).
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from pathlib import Path

import yaml
from rich.markup import escape

from verticalize.config import Config
from verticalize.console import console
from verticalize.mlflow_store import (
    RUN_DIR_TAG,
    TRAIN_TAG,
    experiment_id,
    flat_params,
    mlflow_key,
    numeric_metrics,
    open_client,
    tracking_uri,
)
from verticalize.plugins import get_task
from verticalize.runfolder import RunFolder, read_jsonl, write_json_atomic
from verticalize.train.distributed import is_main_process  # only rank 0 tracks

TRACKING_FILE = "tracking.json"  # in train/: {tracking_uri, experiment, run_id, …}
KIND_TAG, TRAINING = "verticalize.kind", "training"  # tells training runs from registry runs
BEST_TAG, MAIN_METRIC_TAG = "best_metric", "main_metric"
FLUSH_S = 5.0
CLOSE_WAIT_S = 120.0
GIVE_UP_AFTER = 3  # failed sends in a row before tracking stops for this training
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000  # MLflow's log_batch limits
# run files logged as artifacts by log_pipeline (relative to the run folder)
MANIFESTS = ("data", "train", "eval", "export")


def tracking_target(cfg: Config, folder: RunFolder) -> tuple[str, str]:
    """(tracking URI, experiment name) this run tracks to. Creates nothing."""
    uri = cfg.train.mlflow_uri or tracking_uri(cfg, folder.root.parent)
    return uri, cfg.train.mlflow_experiment or cfg.name


def tracked_run(folder: RunFolder) -> dict | None:
    """The record in train/tracking.json (tracking_uri, experiment, run_id, …), or None."""
    path = folder.stage_dir("train") / TRACKING_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def metric_points(row: dict, label: str) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) for every number of a MetricsLog row: train/loss,
    eval/val_macro_f1; a stage other than "train" (generation) prefixes its label:
    sft/train/loss, continued_pretraining/eval/val_loss."""
    event = "eval" if row.get("event") == "eval" else "train"
    prefix = event if label == "train" else f"{label}/{event}"
    now, step = int(time.time() * 1000), int(row.get("step") or 0)
    return [
        (mlflow_key(f"{prefix}/{k}"), float(v), now, step)
        for k, v in row.items()
        if k not in ("step", "event") and isinstance(v, int | float) and not isinstance(v, bool)
    ]


def open_tracker(cfg: Config, folder: RunFolder) -> Tracker | None:
    """The MLflow tracker of this run's training, or None (train.mlflow off / not rank 0).
    Returns at once: the store is opened in the background (the first sqlite creation
    migrates its schema for several seconds) while the model loads."""
    if not cfg.train.mlflow or not is_main_process():
        return None
    return Tracker(cfg, folder)


class Tracker:
    """Receives MetricsLog rows (`log_row`) and sends them to MLflow from a worker thread."""

    def __init__(self, cfg: Config, folder: RunFolder):
        self.cfg, self.folder = cfg, folder
        self.uri, self.experiment = tracking_target(cfg, folder)
        self.run_id: str | None = None
        self._pending: list[tuple[str, float, int, int]] = []
        self._lock, self._wake = threading.Lock(), threading.Event()
        self._status: str | None = None  # set by close()
        self._broken = self._warned = False
        self._final_loss: float | None = None
        self._thread = threading.Thread(target=self._work, name="mlflow-tracker", daemon=True)
        self._thread.start()

    def log_row(self, row: dict, label: str) -> None:
        """Queue the row's numbers as metrics at its step; an evaluation sends at once."""
        if self._broken:
            return
        if row.get("event") == "train" and isinstance(row.get("loss"), int | float):
            self._final_loss = float(row["loss"])
        with self._lock:
            self._pending += metric_points(row, label)
        if row.get("event") == "eval":
            self._wake.set()

    def close(self, status: str) -> None:
        """Send what is queued, record the training summary and end the MLflow run with
        `status` (FINISHED / FAILED); waits for the worker at most CLOSE_WAIT_S."""
        self._status = status
        self._wake.set()
        self._thread.join(CLOSE_WAIT_S)
        if self._thread.is_alive():
            self._warn(TimeoutError(f"MLflow did not answer within {CLOSE_WAIT_S:.0f} s"))

    # -- the worker thread
    def _work(self) -> None:
        try:
            client = open_client(self.uri, create=True)
            self.run_id, logged = attach_run(client, self.cfg, self.folder, resume=True)
            client.update_run(self.run_id, "RUNNING")
        except Exception as e:  # noqa: BLE001 - tracking must never end a training
            self._broken, self._pending = True, []
            return self._warn(e)
        failures = 0
        while True:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            closing = self._status is not None
            with self._lock:
                points, self._pending = self._pending, []
            try:
                send_metrics(client, self.run_id, points, logged)
                failures = 0
                if closing:
                    return self._finish(client)
            except Exception as e:  # noqa: BLE001
                failures += 1
                self._warn(e)
                if closing or failures >= GIVE_UP_AFTER:
                    self._broken = True
                    return None
                with self._lock:  # try these again with the next batch
                    self._pending = points + self._pending

    def _finish(self, client) -> None:
        manifest = self.folder.read_manifest("train") if self._status == "FINISHED" else None
        if manifest:
            log_train_summary(client, self.run_id, manifest, self._final_loss)
        client.set_terminated(self.run_id, self._status)

    def _warn(self, error: Exception) -> None:
        if not self._warned:
            self._warned = True
            _warn(self.uri, error, "Training goes on; its metrics stay in train/metrics.jsonl")


def attach_run(client, cfg: Config, folder: RunFolder, resume: bool) -> tuple[str, dict]:
    """The MLflow run of the training in train/ (from train/tracking.json when it is in the
    same store, experiment and fingerprint), else a new one with the config as params and
    the lineage as tags. Returns (run id, {metric key: last step logged}) — the steps a
    resumed training must not log twice; empty for a new run. `resume` False: only the run id
    matters (nothing is read back)."""
    from mlflow.exceptions import MlflowException

    uri, experiment = tracking_target(cfg, folder)
    fp = _train_fingerprint(folder)
    record = tracked_run(folder) or {}
    same = (record.get("tracking_uri"), record.get("experiment"), record.get("train_fingerprint"))
    if record.get("run_id") and same == (uri, experiment, fp):
        try:
            run = client.get_run(record["run_id"])
        except MlflowException:
            run = None
        if run is not None and run.info.lifecycle_stage == "active":
            return run.info.run_id, _last_steps(client, run) if resume else {}
    name = f"{cfg.name}-{(fp or 'untrained')[:8]}"  # the registry labels its version so too
    tags = {
        KIND_TAG: TRAINING,
        "task": cfg.task,
        "domain": cfg.domain,
        "base_model": str(cfg.model.base),
        "method": cfg.model.method,
        MAIN_METRIC_TAG: get_task(cfg.task).main_metric,
        RUN_DIR_TAG: str(folder.root),
        TRAIN_TAG: fp or "",
    }
    run = client.create_run(experiment_id(client, experiment, uri), tags=tags, run_name=name)
    run_id = run.info.run_id
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in flat_params(cfg.model_dump(mode="json")).items()]
    for i in range(0, len(params), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[i : i + PARAMS_PER_BATCH])
    record = {
        "tracking_uri": uri,
        "experiment": experiment,
        "experiment_id": run.info.experiment_id,
        "run_id": run_id,
        "run_name": name,
        "train_fingerprint": fp,
    }
    write_json_atomic(folder.stage_dir("train") / TRACKING_FILE, record)
    return run_id, {}


def send_metrics(client, run_id: str, points: list, logged: dict[str, int]) -> None:
    """log_batch the points, leaving out steps a resumed run already holds."""
    from mlflow.entities import Metric

    metrics = [Metric(k, v, ts, step) for k, v, ts, step in points if step > logged.get(k, -1)]
    for i in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_BATCH])


def log_train_summary(client, run_id: str, manifest: dict, final_loss: float | None) -> None:
    """What `verticalize runs` shows of a training: steps, seconds, best validation value,
    final loss (summary/* metrics), parameter counts (params)."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    values = {
        "summary/steps": manifest.get("steps"),
        "summary/train_seconds": manifest.get("train_seconds"),
        "summary/final_train_loss": final_loss,
    }
    tags = []
    for name, value in (manifest.get("best_metric") or {}).items():
        key = name if name.startswith("val_") else f"val_{name}"
        values[mlflow_key(f"summary/best_{key}")] = value
        tags.append(RunTag(BEST_TAG, key))
    metrics = [
        Metric(k, float(v), now, 0)
        for k, v in values.items()
        if isinstance(v, int | float) and math.isfinite(v)
    ]
    present = client.get_run(run_id).data.params
    counts = {
        "model.parameters": "parameters",
        "model.trainable_parameters": "trainable_parameters",
    }
    params = [
        Param(k, str(manifest[field]))
        for k, field in counts.items()
        if manifest.get(field) is not None and k not in present
    ]
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)


def log_pipeline(cfg: Config, folder: RunFolder, registered: dict | None = None) -> None:
    """After `verticalize run`: the test metrics (test/<name>, baseline/<name>/<metric>) and
    the run's files (eval reports, resolved config, every stage manifest) go to the MLflow run
    of the training; `registered` (the registry entry) is noted as tags. When that training
    was not tracked (train.mlflow was off, another store), a new MLflow run gets the params
    and the per-step metrics from train/metrics.jsonl first. Skips silently when
    train.mlflow is off; a tracking failure warns and never fails the pipeline."""
    if not cfg.train.mlflow or not is_main_process() or not folder.read_manifest("train"):
        return
    uri, experiment = tracking_target(cfg, folder)
    before = tracked_run(folder) or {}
    done = _results_key(folder, registered)
    same = (before.get("tracking_uri"), before.get("experiment")) == (uri, experiment)
    if same and before.get("results_logged") == done:  # a re-run that changed nothing
        return
    try:
        client = open_client(uri, create=True)
        run_id, _ = attach_run(client, cfg, folder, resume=False)
        if run_id != before.get("run_id"):
            _backfill(client, run_id, cfg, folder)
        _log_results(client, run_id, cfg, folder, registered)
        record = {**(tracked_run(folder) or {}), "results_logged": done}
        write_json_atomic(folder.stage_dir("train") / TRACKING_FILE, record)
    except Exception as e:  # noqa: BLE001 - the pipeline's results are already on disk
        _warn(uri, e, "The run's results are in its folder")


def _log_results(client, run_id: str, cfg: Config, folder: RunFolder, registered) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    report = _read_json(folder.stage_dir("eval") / "report.json")
    scores = {f"test/{k}": v for k, v in numeric_metrics(_metrics_of(report.get("model"))).items()}
    for name, block in (report.get("baselines") or {}).items():
        for k, v in numeric_metrics(_metrics_of(block)).items():
            if ":" not in k:  # per-class scores of baselines would crowd the run page
                scores[f"baseline/{name}/{k}"] = v
    if isinstance(report.get("base_model"), dict):  # generation: the untuned model
        for k, v in numeric_metrics(_metrics_of(report["base_model"])).items():
            scores[f"base_model/{k}"] = v
    eval_m = folder.read_manifest("eval") or {}
    scores["summary/eval_seconds"] = eval_m.get("seconds")
    metrics = [
        Metric(mlflow_key(k), float(v), now, 0)
        for k, v in scores.items()
        if isinstance(v, int | float) and math.isfinite(v)
    ]
    tags = [RunTag("pipeline", "complete" if eval_m.get("complete") else "partial")]
    if registered:
        tags += [
            RunTag("registered_model", str(registered.get("name"))),
            RunTag("registered_version", str(registered.get("version"))),
            RunTag("registered_alias", str(registered.get("alias") or "")),
        ]
    for i in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_BATCH])
    client.log_batch(run_id, tags=tags)
    eval_dir = folder.stage_dir("eval")
    for path in sorted(eval_dir.glob("report*.*")) + sorted(eval_dir.glob("compare.json")):
        client.log_artifact(run_id, str(path), "eval")  # not predictions: they hold test data
    for stage in MANIFESTS:
        if folder.manifest_path(stage).is_file():
            client.log_artifact(run_id, str(folder.manifest_path(stage)), stage)
    if (folder.stage_dir("train") / "metrics.csv").is_file():
        client.log_artifact(run_id, str(folder.stage_dir("train") / "metrics.csv"), "train")
    with tempfile.TemporaryDirectory() as tmp:
        resolved = Path(tmp) / "verticalize.yaml"
        resolved.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(run_id, str(resolved), "config")


def _backfill(client, run_id: str, cfg: Config, folder: RunFolder) -> None:
    """Per-step metrics of a training that was not tracked live, from its metrics.jsonl."""
    train_dir = folder.stage_dir("train")
    logs = [
        (train_dir / sub / "metrics.jsonl", sub or "train")
        for sub in get_task(cfg.task).train_logs(cfg)
    ]
    points, final_loss = [], None
    for path, label in logs:
        for row in read_jsonl(path) if path.is_file() else []:
            points += metric_points(row, label)
            if row.get("event") == "train" and isinstance(row.get("loss"), int | float):
                final_loss = float(row["loss"])
    send_metrics(client, run_id, points, {})
    log_train_summary(client, run_id, folder.read_manifest("train") or {}, final_loss)
    client.set_terminated(run_id, "FINISHED")


def _results_key(folder: RunFolder, registered: dict | None) -> str:
    """Changes whenever eval or export wrote new results (or a new version was registered)."""
    eval_m, export_m = folder.read_manifest("eval") or {}, folder.read_manifest("export") or {}
    version = (registered or {}).get("version")
    return (
        f"{eval_m.get('fingerprint')}|{eval_m.get('created')}|{export_m.get('created')}|{version}"
    )


def _warn(uri: str, error: Exception, outcome: str) -> None:
    text = str(getattr(error, "message", None) or error).strip() or type(error).__name__
    console.print(
        f"[yellow]warning:[/yellow] MLflow tracking to {escape(uri)} failed: "
        f"{escape(text.splitlines()[0][:300])}. {outcome} (train.mlflow: false turns "
        "tracking off).",
        soft_wrap=True,
    )


def _train_fingerprint(folder: RunFolder) -> str | None:
    # the train stage writes run_state.json before training; the manifest after it
    state = _read_json(folder.stage_dir("train") / "run_state.json")
    return state.get("fingerprint") or (folder.read_manifest("train") or {}).get("fingerprint")


def _last_steps(client, run) -> dict[str, int]:
    return {
        key: max(m.step for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
    }


def _metrics_of(block) -> dict:
    return (block or {}).get("metrics") or {} if isinstance(block, dict) else {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
