"""The projects under the console's folder: every verticalize.yaml below it (never above),
their run folders, and the checks that keep a request's path inside the folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from verticalize import api
from verticalize.config import Config
from verticalize.errors import VerticalizeError
from verticalize.web.filecache import while_unchanged

CONFIG_NAME = "verticalize.yaml"
# runs and MLflow's folders hold copies of configs (mlartifacts/…/config/verticalize.yaml)
SKIP_DIRS = {"runs", "mlartifacts", "mlruns", "node_modules", "__pycache__"}
MAX_DEPTH = 4


@dataclass(frozen=True)
class Project:
    key: str  # its folder relative to the console's root, posix ("." for the root itself)
    folder: Path
    config_path: Path

    @property
    def name(self) -> str:
        return self.folder.name if self.key != "." else self.folder.resolve().name


def confined(root: Path, relative: str) -> Path:
    """`relative` resolved under `root`; 404 for anything outside it (.., absolute paths,
    symbolic links that leave it)."""
    if "\x00" in relative or relative.startswith(("/", "\\")) or ".." in Path(relative).parts:
        raise HTTPException(404, f"no such path under the console's folder: {relative!r}")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise HTTPException(404, f"no such path under the console's folder: {relative!r}")
    return path


def find_projects(root: Path) -> list[Project]:
    root = root.resolve()
    found = []
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        if depth >= MAX_DEPTH:
            dirs[:] = []
        if CONFIG_NAME in files:
            path = Path(folder)
            key = path.relative_to(root).as_posix()
            found.append(Project(key or ".", path, path / CONFIG_NAME))
    return found


def get_project(root: Path, key: str) -> Project:
    folder = confined(root, key or ".")
    config = folder / CONFIG_NAME
    if not config.is_file():
        raise HTTPException(404, f"no project at {key!r}: it has no {CONFIG_NAME}")
    return Project(key or ".", folder, config)


def load(path: Path) -> Config:
    """api.load of a project's YAML, kept while the file is unchanged (a page over 50 projects
    would otherwise validate 50 configs per request). Failures are never kept: a missing
    source file may appear."""
    return while_unchanged(("config", path), (path,), lambda: api.load(path))


def run_dir(project: Project) -> Path | None:
    """The project's run folder as `verticalize run` started in its folder makes it, or None
    when its config does not load."""
    try:
        cfg = load(project.config_path)
    except (VerticalizeError, OSError):
        return None
    relative = Path(cfg.run_dir) if cfg.run_dir else Path("runs") / cfg.name
    return relative if relative.is_absolute() else (project.folder / relative).resolve()


def config_error(path: Path) -> str | None:
    """The CLI's own validation message for a config file, or None when it loads."""
    try:
        api.load(path)  # fresh, never cached: the editor checks candidate files under one name
    except VerticalizeError as e:
        return str(e)
    return None
