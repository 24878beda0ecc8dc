"""Where the registry lives and how it is read: tracking URI, MLflow client, version rows.

Everything here talks to MLflow through an explicit `MlflowClient(uri)`; nothing reads or sets
MLflow's global tracking URI, so a call never creates `mlflow.db` or `mlruns/` in the CWD.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from verticalize.config import Config
from verticalize.console import console
from verticalize.errors import RegistryError
from verticalize.models.gguf import cache_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION, CHALLENGER, ROLLED_BACK = "champion", "challenger", "rolled_back"
MAX_KEY, MAX_PARAM_VALUE = 250, 6000  # MLflow's limits on key and param value length
HISTORY_TAG = "champion_history"  # registered-model tag: JSON list of earlier champions
METRIC_TAG, VALUE_TAG, METRICS_TAG = "metric", "metric_value", "metrics"
TEST_TAG, TRAIN_TAG, RUN_DIR_TAG = "test_sha256", "train_fingerprint", "run_dir"


def tracking_uri(cfg: Config | None, runs_root: Path | None) -> str:
    """registry.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<runs_root>/mlflow.db
    (runs_root: the folder holding the run folders; default ./runs). Creates nothing."""
    if cfg is not None and cfg.registry.tracking_uri:
        return cfg.registry.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(runs_root or "runs").expanduser().resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for any other store)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).expanduser().resolve()


def artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store go next to its database (never into the CWD); other stores
    (a tracking server) keep their own default."""
    db = sqlite_path(uri)
    return (db.parent / "mlartifacts").as_uri() if db else None


def _quiet_mlflow() -> None:
    # MLflow logs every table migration at INFO and draws a progress bar per download
    if not os.environ.get("MLFLOW_LOGGING_LEVEL"):
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # raised inside MLflow's own SQLAlchemy mappings; nothing a user can act on
    warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated")


def open_client(uri: str, create: bool) -> MlflowClient | None:
    """An MLflow client for `uri`. A sqlite database that does not exist yet is created only
    when `create` (the first creation migrates the schema, ~5-10 s); otherwise None."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        if not create:
            return None
        db.parent.mkdir(parents=True, exist_ok=True)
        console.print(f"mlflow: creating the database {db} (first time only)", soft_wrap=True)
        _copy_empty_store(db, uri)
    from mlflow import MlflowClient

    _quiet_mlflow()  # after the import: importing mlflow sets its loggers to INFO
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _copy_empty_store(db: Path, uri: str) -> None:
    """Create `db` as a copy of an empty, migrated store. MLflow migrates a new sqlite schema
    step by step (3-10 s); the first creation keeps a pristine copy per MLflow version in the
    verticalize cache, later ones copy it (~0.05 s). Any failure leaves `db` absent, and
    MLflow then creates it itself."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        template = cache_dir() / "mlflow" / f"empty-{mlflow.__version__}.db"
        if not template.is_file():
            template.parent.mkdir(parents=True, exist_ok=True)
            fresh = template.with_name(f"{template.name}.{os.getpid()}.tmp")
            _quiet_mlflow()
            try:
                MlflowClient(tracking_uri=f"sqlite:///{fresh}").search_experiments()
                os.replace(fresh, template)  # whole files only: concurrent creators are fine
            finally:
                fresh.unlink(missing_ok=True)
        part = db.with_name(f"{db.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(template, part)
            with contextlib.closing(sqlite3.connect(part)) as con, con:  # the default
                con.execute(  # experiment's artifacts go beside this database, like the others'
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    (f"{artifact_root(uri)}/0",),
                )
            os.link(part, db)  # atomic, and never over a store another process just made
        finally:
            part.unlink(missing_ok=True)
    except sqlite3.Error:  # a damaged template: MLflow makes this store, the next a new copy
        template.unlink(missing_ok=True)
    except (OSError, MlflowException):
        return


def require_client(uri: str) -> MlflowClient:
    """The client of an existing registry, or a RegistryError saying how to create one."""
    client = open_client(uri, create=False)
    if client is None:
        raise RegistryError(
            f"no model registry at {uri} (the database file does not exist). Fix: register a "
            "model first with `verticalize registry register <yaml>` (or `verticalize run`), "
            "or pass --tracking-uri / set MLFLOW_TRACKING_URI to the registry you mean."
        )
    return client


@contextlib.contextmanager
def mlflow_errors(uri: str) -> Iterator[None]:
    """Turn an MLflow failure (server down, bad URI, schema) into a RegistryError."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        first = str(e.message if hasattr(e, "message") else e).splitlines()[0]
        raise RegistryError(
            f"MLflow registry at {uri} failed: {first}. Fix: check the tracking URI "
            "(registry.tracking_uri / --tracking-uri / MLFLOW_TRACKING_URI) and that the "
            "server or database is reachable."
        ) from None


def model_names(client: MlflowClient) -> list[str]:
    """Every registered model name, sorted."""
    names, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        names += [m.name for m in page]
        token = page.token
        if not token:
            return sorted(names)


def get_model(client: MlflowClient, name: str):
    """The registered model `name`, or a RegistryError listing the names that exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    known = model_names(client)
    raise RegistryError(
        f"registered model {name!r} does not exist; the registry has "
        f"{', '.join(repr(n) for n in known) or 'no models'}. Fix: use one of those names, or "
        "register this model with `verticalize registry register <yaml>`."
    )


def versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """All versions of `name`, oldest first (search results carry no aliases)."""
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=10000, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return sorted(found, key=lambda v: int(v.version))


def aliases_by_version(model) -> dict[str, list[str]]:
    """{version: [aliases]} from a registered model's alias map."""
    out: dict[str, list[str]] = {}
    for alias, version in sorted((model.aliases or {}).items()):
        out.setdefault(str(version), []).append(alias)
    return out


def version_value(v: ModelVersion, metric: str | None = None) -> float | None:
    """The test value of `metric` (default: the version's recorded main metric)."""
    tags = v.tags or {}
    if metric is None or metric == tags.get(METRIC_TAG):
        raw = tags.get(VALUE_TAG)
        return float(raw) if raw not in (None, "") else None
    value = json.loads(tags.get(METRICS_TAG) or "{}").get(metric)
    return float(value) if isinstance(value, int | float) else None


def version_metrics(v: ModelVersion) -> dict[str, float]:
    return json.loads((v.tags or {}).get(METRICS_TAG) or "{}")


def history(model) -> list[str]:
    """Earlier champions, oldest first (the registered model's champion_history tag)."""
    return [str(x) for x in json.loads((model.tags or {}).get(HISTORY_TAG) or "[]")]


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def list_versions(name: str | None, tracking_uri: str) -> list[dict]:
    """One row per version: name, version, aliases, metric, value, created, run_dir,
    test_sha256 — for one registered model, or all of them (name None), oldest first."""
    client = open_client(tracking_uri, create=False)
    if client is None:
        if name is None:
            return []
        client = require_client(tracking_uri)
    rows = []
    with mlflow_errors(tracking_uri):
        for model_name in [name] if name else model_names(client):
            model = get_model(client, model_name)
            aliases = aliases_by_version(model)
            for v in versions(client, model_name):
                tags = v.tags or {}
                rows.append(
                    {
                        "name": model_name,
                        "version": str(v.version),
                        "aliases": aliases.get(str(v.version), []),
                        "metric": tags.get(METRIC_TAG),
                        "value": version_value(v),
                        "created": _when(v.creation_timestamp),
                        "run_dir": tags.get(RUN_DIR_TAG),
                        "test_sha256": tags.get(TEST_TAG),
                    }
                )
    return rows


def alias_version(name: str, alias: str, tracking_uri: str) -> str | None:
    """The version `alias` points at, or None (unknown model / alias, no registry yet).
    One query (~6 ms on sqlite); meant to be polled for hot reload. An unreachable store
    raises RegistryError."""
    from mlflow.exceptions import MlflowException

    client = open_client(tracking_uri, create=False)
    if client is None:
        return None
    with mlflow_errors(tracking_uri):
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise


def numeric_metrics(metrics: dict) -> dict[str, float]:
    """Top-level numbers plus per-class / per-type ones as `f1:<label>` (booleans dropped)."""
    out = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for group in ("per_class", "per_type"):
        for label, scores in (metrics.get(group) or {}).items():
            for k, v in (scores or {}).items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out.setdefault(f"{k}:{label}", float(v))
    return out


def flat_params(obj, prefix: str = "") -> dict[str, str]:
    """The config as `section.key` → text params, cut to MLflow's key and value limits."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list) and any(isinstance(x, dict | list) for x in obj):
        items = enumerate(obj)
    else:
        text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        return {prefix[:MAX_KEY]: text[:MAX_PARAM_VALUE]}
    for k, v in items:
        out |= flat_params(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def mlflow_key(name: str) -> str:
    # MLflow metric names allow letters, digits and _ - . space / : only
    return "".join(c if c.isalnum() or c in "_-. /:" else "_" for c in name)[:MAX_KEY]


def experiment_id(client, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_root(uri))
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id
