"""What `verticalize serve <target>` serves: a run folder, a model folder, or a registry URI
(models:/name@alias, models:/name/3), resolved to one model folder and its task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from verticalize.errors import ServeError, VerticalizeError


@dataclass(frozen=True)
class Resolved:
    target: str  # as given (reloads resolve it again)
    folder: Path  # the Hugging Face model folder that is loaded
    task: str  # classification | ner | generation
    run_dir: Path | None  # the run it belongs to, for default serve/ paths
    registry_name: str | None = None
    registry_alias: str | None = None  # set for models:/name@alias: polled for hot reload
    registry_version: str | None = None  # "name/3", as registry.resolve labels it


def model_folder(path: Path) -> Path | None:
    """<run>/export/model, else <run>/model, else the folder itself if it holds a model."""
    for candidate in (path / "export" / "model", path / "model", path):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def run_dir_of(folder: Path) -> Path | None:
    """The run folder a model folder sits in (<run>/model or <run>/export/model)."""
    folder = folder.resolve()
    if folder.name == "model" and folder.parent.name == "export":
        return folder.parent.parent
    if folder.name == "model" and any((folder.parent / d).is_dir() for d in ("data", "train")):
        return folder.parent
    return None


def resolve_target(target: str, tracking_uri: str | None = None) -> Resolved:
    """The model folder, task and run behind `target`; ServeError with the fix when there is
    no model there."""
    from verticalize.predict import model_task

    registered = target.startswith("models:")
    name = alias = version = None
    if registered:
        from verticalize import registry
        from verticalize.registry.resolve import parse_models_uri

        try:
            name, alias, _ = parse_models_uri(target)
            path, version = registry.resolve(target, tracking_uri)
        except VerticalizeError as e:
            raise ServeError(f"cannot serve {target}: {e}") from None
        path = Path(path)
    else:
        path = Path(target).expanduser()
        if not path.exists():
            raise ServeError(
                f"{target}: no such file or folder. Fix: give a run folder (runs/<name>), a "
                "model folder, or models:/<name>@<alias>."
            )
    folder = model_folder(path)
    if folder is None:
        raise ServeError(
            f"{path}: no model here (looked for export/model/, model/ and config.json). Fix: "
            "run `verticalize train` (and `verticalize export`) first, or give a model folder."
        )
    try:
        task = model_task(folder)
    except VerticalizeError as e:
        raise ServeError(str(e)) from None
    run_dir = None
    if not registered:  # a run folder given directly, or the run a model folder sits in
        run_dir = path.resolve() if folder != path else run_dir_of(folder)
    return Resolved(target, folder.resolve(), task, run_dir, name, alias, version)
