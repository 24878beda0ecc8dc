"""models:/name@alias and models:/name/N → a local model folder a server can load."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from verticalize.errors import RegistryError
from verticalize.mlflow_store import (
    aliases_by_version,
    get_model,
    mlflow_errors,
    require_client,
    versions,
)
from verticalize.models.gguf import cache_dir

FORMS = "models:/<name>@<alias> (e.g. models:/drug-reviews@champion) or models:/<name>/<version>"


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of a models:/ URI; exactly one of alias / version is set."""
    if not uri.startswith("models:/"):
        raise RegistryError(f"{uri!r} is not a registry URI. Fix: use {FORMS}.")
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        if name and alias:
            return name, alias, None
    elif "/" in rest:
        name, _, version = rest.rpartition("/")
        if name and version.isdigit():
            return name, None, str(int(version))
    raise RegistryError(f"{uri!r}: cannot tell the model and alias / version apart. Fix: {FORMS}.")


def _local_dir(download_uri: str) -> Path | None:
    """The folder itself when the artifact store is this machine's disk (None: remote)."""
    parsed = urllib.parse.urlparse(download_uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    return Path(download_uri) if parsed.scheme == "" else None


def _download(download_uri: str, tracking_uri: str) -> Path:
    """Copy a remote model folder into the verticalize cache once (by URI); a complete copy
    is re-used, a half-finished one never is (it only becomes visible by rename)."""
    import mlflow.artifacts

    key = hashlib.sha256(f"{tracking_uri}\n{download_uri}".encode()).hexdigest()[:16]
    target = cache_dir() / "registry" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=download_uri, dst_path=str(tmp), tracking_uri=tracking_uri
            )
        )
        os.replace(got, target)
    except OSError:
        if not target.is_dir():  # another process won the race: its copy is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(uri: str, tracking_uri: str) -> tuple[Path, str]:
    """(local model folder, "name/version") for models:/name@alias or models:/name/N.
    A folder on this machine is returned in place; a remote one is downloaded to the cache.
    Unknown names, aliases and versions raise RegistryError listing what exists."""
    name, alias, version = parse_models_uri(uri)
    client = require_client(tracking_uri)
    with mlflow_errors(tracking_uri):
        model = get_model(client, name)
        if alias is not None:
            known = model.aliases or {}
            if alias not in known:
                listed = ", ".join(f"@{a} → {v}" for a, v in sorted(known.items())) or "none"
                raise RegistryError(
                    f"{uri}: model {name!r} has no alias {alias!r} (aliases: {listed}). Fix: "
                    f"use one of those, or models:/{name}/<version>; "
                    f"`verticalize registry list {name}` shows every version."
                )
            version = str(known[alias])
        else:
            numbers = [str(v.version) for v in versions(client, name)]
            if version not in numbers:
                shown = aliases_by_version(model)
                listed = ", ".join(
                    n + (f" ({', '.join(shown[n])})" if n in shown else "") for n in numbers
                )
                raise RegistryError(
                    f"{uri}: model {name!r} has no version {version} (versions: "
                    f"{listed or 'none'}). Fix: use one of those, or models:/{name}@champion."
                )
        download_uri = client.get_model_version_download_uri(name, version)
        folder = _local_dir(download_uri) or _download(download_uri, tracking_uri)
    if not (folder / "config.json").is_file():
        raise RegistryError(
            f"{uri}: version {version} of {name!r} has no config.json at {folder} (files "
            "missing from the artifact store?). Fix: register the run again with "
            "`verticalize registry register <yaml>`."
        )
    return folder, f"{name}/{version}"
