"""Register a run's exported model: one MLflow run (params, metrics, lineage artifacts) and
one model version whose files are export/model/, tagged with where it came from."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from verticalize.config import Config
from verticalize.errors import RegistryError
from verticalize.mlflow_store import (
    CHALLENGER,
    CHAMPION,
    METRIC_TAG,
    METRICS_TAG,
    RUN_DIR_TAG,
    TEST_TAG,
    TRAIN_TAG,
    VALUE_TAG,
    experiment_id,
    flat_params,
    mlflow_errors,
    mlflow_key,
    numeric_metrics,
    open_client,
    tracking_uri,
    versions,
)
from verticalize.plugins import get_task
from verticalize.runfolder import RunFolder, file_sha256

# run files copied next to the model as lineage (relative to the run folder)
LINEAGE_FILES = (
    "data/manifest.json",
    "train/manifest.json",
    "eval/report.json",
    "eval/report.html",
    "export/manifest.json",
)
# MLflow limits (mlflow.utils.validation): key length, param value length, params per batch
PARAMS_PER_BATCH = 100


@dataclass
class ExportedModel:
    """What the registry needs to know about a run's export/model/ folder."""

    model_dir: Path
    metric: str
    value: float
    metrics: dict[str, float]
    test_sha256: str
    train_fingerprint: str
    data_fingerprint: str
    base_model: str
    label: str
    export_manifest: dict


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _refuse_unpublished(cfg: Config, m: dict, path: Path) -> None:
    scores = m.get("metrics") or {}
    numbers = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, int | float))
    drop = m.get("metric_drop")
    raise RegistryError(
        f"{path}: the export was not published, so it is not registered: "
        f"{m.get('reason') or 'the quantized model lost too much accuracy'} "
        f"({m.get('metric', 'metric')}: {numbers or 'not measured'}; drop "
        f"{'?' if drop is None else f'{drop:.4f}'} > export.max_metric_drop "
        f"{m.get('max_metric_drop', cfg.export.max_metric_drop)}). Fix: set export.quantize: false, or raise "
        "export.max_metric_drop if that loss is acceptable, then run "
        "`verticalize export <yaml> --force` and register again."
    )


def read_export(cfg: Config, folder: RunFolder) -> ExportedModel:
    """The run's published export with its test metrics and lineage, or a RegistryError naming
    the stage to run."""
    path = folder.manifest_path("export")
    m = folder.read_manifest("export")
    if not m or not m.get("complete"):
        raise RegistryError(
            f"{path}: the export stage has not finished, and the registry registers the "
            "exported model. Fix: run `verticalize export <yaml>` first (or `verticalize run "
            "<yaml>` for the whole pipeline)."
        )
    if not m.get("published"):
        _refuse_unpublished(cfg, m, path)
    model_dir = folder.stage_dir("export") / "model"
    if not (model_dir / "config.json").is_file():
        raise RegistryError(
            f"{model_dir}: no config.json, so there is no model to register. Fix: run "
            "`verticalize export <yaml> --force` to write it again."
        )
    card = _read_json(model_dir / "verticalize.json")
    report = _read_json(folder.stage_dir("eval") / "report.json")
    # the report adds per-class scores (f1:<label>) to the card's flat numbers
    metrics = numeric_metrics(report.get("model", {}).get("metrics") or {})
    metrics |= numeric_metrics(card.get("metrics") or {})
    metric = cfg.registry.metric or card.get("metric") or get_task(cfg.task).main_metric
    if metric not in metrics:
        raise RegistryError(
            f"registry.metric: {metric!r} was not measured on the test split of {folder.root} "
            f"(measured: {', '.join(sorted(metrics)) or 'nothing'}). Fix: set registry.metric "
            "to one of those, or run `verticalize eval <yaml>` and export again."
        )
    train_m = folder.read_manifest("train") or {}
    data_m = folder.read_manifest("data") or {}
    test_sha = card.get("test_sha256") or _test_sha256(folder)
    train_fp = card.get("train_fingerprint") or train_m.get("fingerprint")
    if not test_sha or not train_fp:
        raise RegistryError(
            f"{model_dir / 'verticalize.json'}: the model's test-set hash or training "
            "fingerprint is unknown (no test split, no train manifest). Fix: run the pipeline "
            "up to export again: `verticalize run <yaml>`."
        )
    return ExportedModel(
        model_dir=model_dir,
        metric=metric,
        value=metrics[metric],
        metrics=metrics,
        test_sha256=test_sha,
        train_fingerprint=train_fp,
        data_fingerprint=card.get("data_fingerprint") or data_m.get("fingerprint") or "",
        base_model=card.get("base_model") or train_m.get("base_model") or str(cfg.model.base),
        label=card.get("version") or f"{cfg.name}-{train_fp[:8]}",
        export_manifest=m,
    )


def _test_sha256(folder: RunFolder) -> str | None:
    for name in ("test.jsonl", "test.jsonl.enc"):
        path = folder.stage_dir("data") / name
        if path.is_file():
            return file_sha256(path)
    return None


def _log_run(client, uri: str, name: str, cfg: Config, folder: RunFolder, ex: ExportedModel):
    """One finished MLflow run holding the config, metrics, lineage files and model files."""
    from mlflow.entities import Metric, Param, RunStatus

    run = client.create_run(
        experiment_id(client, name, uri),
        run_name=ex.label,
        tags={TRAIN_TAG: ex.train_fingerprint, RUN_DIR_TAG: str(folder.root)},
    )
    run_id = run.info.run_id
    try:
        params = [Param(k, v) for k, v in flat_params(cfg.model_dump(mode="json")).items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i : i + PARAMS_PER_BATCH])
        now = int(time.time() * 1000)
        scores = dict(ex.metrics)
        export_m = ex.export_manifest
        for k, v in (export_m.get("metrics") or {}).items():
            scores[f"export.{k}"] = v
        for k in ("metric_drop", "latency_ratio", "size_ratio"):
            scores[f"export.{k}"] = export_m.get(k)
        metrics = [
            Metric(mlflow_key(k), float(v), now, 0)
            for k, v in scores.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        client.log_batch(run_id, metrics=metrics)
        for rel in LINEAGE_FILES:
            if (folder.root / rel).is_file():
                client.log_artifact(run_id, str(folder.root / rel), str(Path(rel).parent))
        with tempfile.TemporaryDirectory() as tmp:
            resolved = Path(tmp) / "verticalize.yaml"
            resolved.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
            client.log_artifact(run_id, str(resolved), "config")
        client.log_artifacts(run_id, str(ex.model_dir), "model")
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id)
    return run_id, run.info.artifact_uri


def _check_name(name: str) -> None:
    bad = [c for c in "/:@'\"" if c in name]
    if bad or not name.strip():
        raise RegistryError(
            f"registry.model_name: {name!r} cannot name a registered model (it contains "
            f"{' '.join(bad) or 'nothing'}). Fix: use letters, digits, '-', '_' and '.'."
        )


def _entry(name: str, version, alias: str | None, ex: ExportedModel, uri: str, new: bool):
    return {
        "name": name,
        "version": str(version),
        "alias": alias,
        "metric": ex.metric,
        "value": ex.value,
        "test_sha256": ex.test_sha256,
        "new": new,
        "tracking_uri": uri,
    }


def register(cfg: Config, folder: RunFolder) -> dict:
    """Register the run's published export as a new version of registry.model_name (default
    `name`): champion if the model has none, else challenger. Registering a run whose train
    fingerprint is already registered returns that version instead (`new`: False)."""
    name = cfg.registry.model_name or cfg.name
    _check_name(name)
    ex = read_export(cfg, folder)
    uri = tracking_uri(cfg, folder.root.parent)
    client = open_client(uri, create=True)
    from mlflow.exceptions import MlflowException

    with mlflow_errors(uri):
        try:
            model = client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            model = client.create_registered_model(
                name,
                tags={"task": cfg.task, "domain": cfg.domain},
                description=f"verticalize {cfg.task} model for the {cfg.domain} domain",
            )
        for v in versions(client, name):
            if (v.tags or {}).get(TRAIN_TAG) == ex.train_fingerprint:
                held = [a for a, n in (model.aliases or {}).items() if str(n) == str(v.version)]
                alias = next((a for a in (CHAMPION, CHALLENGER) if a in held), None)
                return _entry(name, v.version, alias, ex, uri, new=False)
        run_id, artifact_uri = _log_run(client, uri, name, cfg, folder, ex)
        config_json = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
        tags = {
            "task": cfg.task,
            METRIC_TAG: ex.metric,
            VALUE_TAG: repr(ex.value),
            METRICS_TAG: json.dumps(ex.metrics, sort_keys=True),
            TEST_TAG: ex.test_sha256,
            TRAIN_TAG: ex.train_fingerprint,
            "data_fingerprint": ex.data_fingerprint,
            "base_model": ex.base_model,
            RUN_DIR_TAG: str(folder.root),
            "config_sha256": hashlib.sha256(config_json.encode()).hexdigest(),
            "data_manifest": f"{artifact_uri}/data/manifest.json",
            "version_label": ex.label,
        }
        mv = client.create_model_version(
            name, f"{artifact_uri}/model", run_id, tags=tags, description=ex.label
        )
        alias = CHALLENGER if CHAMPION in (model.aliases or {}) else CHAMPION
        client.set_registered_model_alias(name, alias, mv.version)
    return _entry(name, mv.version, alias, ex, uri, new=True)
