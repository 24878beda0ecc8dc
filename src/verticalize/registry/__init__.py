"""Model registry (S6) on MLflow: versions, champion / challenger aliases, promotion gate,
rollback, and models:/ URIs resolved to local folders.

    register(cfg, folder)            a run's published export → new version (champion or
                                     challenger); same train fingerprint → same version
    promote(name, uri, metric, margin, force)   challenger → champion if it wins by margin
    rollback(name, uri)              champion → the one before it
    list_versions(name | None, uri)  rows for `verticalize registry list`
    resolve("models:/name@alias", uri) → (folder, "name/3")
    alias_version(name, alias, uri)  one cheap query, for hot-reload polling
"""

from verticalize.mlflow_store import alias_version, list_versions, tracking_uri
from verticalize.registry.promote import promote, rollback
from verticalize.registry.register import register
from verticalize.registry.resolve import resolve

__all__ = [
    "alias_version",
    "list_versions",
    "promote",
    "register",
    "resolve",
    "rollback",
    "tracking_uri",
]
