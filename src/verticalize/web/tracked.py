"""The Runs page: every training the MLflow stores of the projects under the console's folder
tracked, in one sortable, filterable table; and the compare page's route (compare_view.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from verticalize import api
from verticalize.config import Config
from verticalize.errors import VerticalizeError
from verticalize.mlflow_store import sqlite_path
from verticalize.mlflow_store import tracking_uri as registry_store
from verticalize.runfolder import RunFolder
from verticalize.train.tracking import TRACKING_FILE, tracking_target
from verticalize.web import compare_view
from verticalize.web.filecache import while_unchanged
from verticalize.web.pages import render, root
from verticalize.web.projects import Project, find_projects, load, run_dir

router = APIRouter()
MLFLOW_DIRS = {"mlartifacts", "mlruns"}

# column key → (header, row value it sorts by)
COLUMNS = {
    "project": ("Project", lambda r: r["project"]),
    "run": ("Run", lambda r: r["run_name"] or r["run_id"]),
    "started": ("Started", lambda r: r["started"]),
    "status": ("Status", lambda r: r["status"]),
    "steps": ("Steps", lambda r: r["steps"]),
    "loss": ("Final train loss", lambda r: r["train_loss"]),
    "best": ("Best validation", lambda r: r["best_value"]),
    "test": ("Test metric", lambda r: r["test_value"]),
    "seconds": ("Seconds", lambda r: r["train_seconds"]),
}


@dataclass(frozen=True)
class Loaded:
    """A project whose verticalize.yaml loads, with its run folder."""

    project: Project
    cfg: Config
    run_folder: Path
    store: str  # where its trainings are tracked


def loaded_projects(folder: Path) -> tuple[list[Loaded], list[str]]:
    """The projects under `folder` whose config loads, and a message for each that does not."""
    found, problems = [], []
    for p in find_projects(folder):
        if MLFLOW_DIRS & set(Path(p.key).parts):
            continue  # a run's config that MLflow keeps as an artifact, not a project
        try:
            cfg = load(p.config_path)
        except VerticalizeError as e:
            problems.append(f"{p.key}: its verticalize.yaml does not load, so it is skipped ({e})")
            continue
        folder = run_dir(p)
        found.append(Loaded(p, cfg, folder, training_store(cfg, folder, p.folder)))
    return found, problems


def _anchored(uri: str, folder: Path) -> str:
    """A relative sqlite:/// URI is relative to where the CLI runs: the project's folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rest = uri.removeprefix("sqlite:///")
        if not Path(rest.split("?", 1)[0]).is_absolute():
            return f"sqlite:///{(folder / rest).resolve()}"
    return uri


def training_store(cfg: Config, run_folder: Path, project_folder: Path) -> str:
    """The store a project's trainings track to (train.mlflow_uri, else the registry's)."""
    uri, _ = tracking_target(cfg, RunFolder(cfg, run_folder))
    return _anchored(uri, project_folder)


def model_store(item: Loaded) -> str:
    """The project's model registry (registry.tracking_uri, $MLFLOW_TRACKING_URI, else
    <runs folder>/mlflow.db)."""
    return _anchored(registry_store(item.cfg, item.run_folder.parent), item.project.folder)


def run_folders(folder: Path, items: list[Loaded] | None = None) -> dict[str, Path]:
    """Run folders under `folder` by their path relative to it: every <project>/runs/*/ that
    holds eval/report.json or train/, plus each project's own run folder."""
    items = loaded_projects(folder)[0] if items is None else items
    top = folder.resolve()
    found: dict[str, Path] = {}
    for item in items:
        runs = item.project.folder / "runs"
        candidates = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
        for path in [item.run_folder, *candidates]:
            path = path.resolve()
            marks = (path / "eval" / "report.json", path / "train")
            if path.is_relative_to(top) and any(m.exists() for m in marks):
                found.setdefault(path.relative_to(top).as_posix(), path)
    return dict(sorted(found.items()))


def is_evaluated(path: Path) -> bool:
    return (path / "eval" / "report.json").is_file()


def _tracked_ids(folders: dict[str, Path]) -> dict[str, str]:
    """MLflow run id → run folder (relative), from each folder's train/tracking.json."""
    out = {}
    for rel, path in folders.items():
        try:
            record = json.loads((path / "train" / TRACKING_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("run_id"):
            out[str(record["run_id"])] = rel
    return out


def _folder_of(row: dict, top: Path, folders: dict[str, Path], ids: dict[str, str]) -> str | None:
    """The row's run folder relative to the console's folder: its run_dir tag when that lies
    under it, else the folder whose train/tracking.json names this run; None otherwise."""
    if row.get("run_dir"):
        path = Path(row["run_dir"]).resolve()
        if path.is_relative_to(top) and path.is_dir():
            return path.relative_to(top).as_posix()
    return ids.get(row["run_id"])


def _project_of(row: dict, folder: str | None, items: list[Loaded], store: str) -> str | None:
    """The project a tracked run belongs to: the one holding its run folder, else the one
    tracking to this store under the run's experiment name; None when no project claims it."""
    if folder is not None:
        owners = [i for i in items if f"{folder}/".startswith(_key_prefix(i.project.key))]
        if owners:
            return max(owners, key=lambda i: len(i.project.key)).project.key
    for item in items:
        experiment = item.cfg.train.mlflow_experiment or item.cfg.name
        if item.store == store and experiment == row["experiment"]:
            return item.project.key
    return None


def _key_prefix(key: str) -> str:
    return "" if key == "." else f"{key}/"


def store_cached(kind: str, uri: str, fetch) -> list[dict]:
    """fetch() (an MLflow query of the store at `uri`), kept while an SQLite store's files are
    unchanged: opening a client and searching costs ~0.5 s, and the runs and registry pages
    ask on every load. Other stores are asked every time."""
    db = sqlite_path(uri)
    if db is None:
        return fetch()
    return while_unchanged((kind, uri), (db, db.with_name(db.name + "-wal")), fetch)


def store_runs(uri: str) -> list[dict]:
    return store_cached("runs", uri, lambda: api.runs(uri=uri))


def tracked_rows(folder: Path) -> tuple[list[dict], list[str]]:
    """One row per tracked training of the projects under `folder` (each store read once),
    with `project`, `folder` (its run folder under `folder`, or None), `evaluated` and
    `test_value` (the main test metric) added; and the problems met (bad configs, stores
    that failed)."""
    items, problems = loaded_projects(folder)
    top = folder.resolve()
    folders = run_folders(folder, items)
    ids = _tracked_ids(folders)
    rows, seen = [], set()
    for store in dict.fromkeys(i.store for i in items):
        try:
            found = store_runs(store)
        except VerticalizeError as e:
            problems.append(str(e))
            continue
        for row in found:
            if row["run_id"] in seen:
                continue  # a store copied with its runs: the same run twice
            seen.add(row["run_id"])
            rel = _folder_of(row, top, folders, ids)
            project = _project_of(row, rel, items, store)
            if project is None:
                continue  # another project's run in a shared store
            main = row.get("main_metric")
            rows.append(
                row
                | {
                    "project": project,
                    "store": store,
                    "folder": rel,
                    "evaluated": rel is not None and is_evaluated(folders.get(rel, top / rel)),
                    "test_value": row["test"].get(main) if main else None,
                }
            )
    return rows, problems


def sort_rows(rows: list[dict], column: str, direction: str) -> list[dict]:
    """Rows ordered by `column`; rows without a value go last in either direction."""
    key = COLUMNS[column][1]
    present = [r for r in rows if key(r) is not None]
    missing = [r for r in rows if key(r) is None]
    return sorted(present, key=key, reverse=direction == "desc") + missing


def filter_rows(rows: list[dict], q: str, project: str) -> list[dict]:
    needle = q.strip().lower()
    out = [r for r in rows if not project or r["project"] == project]
    if needle:
        fields = ("project", "run_name", "run_id", "experiment")
        out = [r for r in out if any(needle in str(r.get(f) or "").lower() for f in fields)]
    return out


def _header_links(sort: str, direction: str, q: str, project: str) -> list[dict]:
    out = []
    for key, (label, _) in COLUMNS.items():
        active = key == sort
        flip = "asc" if active and direction == "desc" else "desc" if active else "asc"
        query = {"sort": key, "dir": flip} | ({"q": q} if q else {})
        query |= {"project": project} if project else {}
        out.append(
            {
                "key": key,
                "label": label,
                "href": f"/runs?{urlencode(query)}",
                "aria_sort": ("ascending" if direction == "asc" else "descending")
                if active
                else None,
            }
        )
    return out


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    sort: str = "started",
    direction: str = Query("desc", alias="dir"),
    q: str = "",
    project: str = "",
):
    bad = []
    if sort not in COLUMNS:
        bad.append(f"sort: {sort!r} is not a column. Fix: use one of {', '.join(COLUMNS)}.")
        sort = "started"
    if direction not in ("asc", "desc"):
        bad.append(f"dir: {direction!r} is not a direction. Fix: use asc or desc.")
        direction = "desc"
    rows, problems = tracked_rows(root(request))
    projects = sorted({r["project"] for r in rows})
    shown = sort_rows(filter_rows(rows, q, project), sort, direction)
    return render(
        request,
        "runs.html.j2",
        422 if bad else 200,
        nav="runs",
        rows=shown,
        total=len(rows),
        projects=projects,
        headers=_header_links(sort, direction, q, project),
        sort=sort,
        dir=direction,
        q=q,
        project=project,
        problems=bad + problems,
    )


@router.get("/runs/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    a: str = "",
    b: str = "",
    run: list[str] = Query(default=[]),  # noqa: B008 - FastAPI's way to read ?run=x&run=y
):
    """Runs A and B side by side: ?a=&b= (run folders relative to the console's folder, or
    MLflow run ids), or the two ?run= values the runs table's checkboxes send."""
    if not a and not b and run:
        picked = run
        a, b = (run + ["", ""])[:2] if len(run) <= 2 else ("", "")
    else:
        picked = None
    folder = root(request)
    folders = {k: v for k, v in run_folders(folder).items() if is_evaluated(v)}
    if picked is not None and len(picked) != 2:
        error = (
            f"run: {len(picked)} run(s) picked; a comparison needs exactly two. Fix: tick two "
            "runs in the table, then Compare."
        )
        return compare_view.refusal(request, folders, a, b, error, 422)
    return compare_view.compare_response(request, folder, folders, a, b, _run_ids)


def _run_ids(folder: Path) -> dict[str, str]:
    """MLflow run id → run folder (relative) for the tracked runs that have one."""
    return {r["run_id"]: r["folder"] for r in tracked_rows(folder)[0] if r["folder"]}
