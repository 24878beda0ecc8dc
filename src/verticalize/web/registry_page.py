"""The Registry page: the registered models of the projects' MLflow registries with their
versions, champion / challenger aliases and test metric; promotion through the gate and
rollback, each answered with the decision and both scores."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from verticalize import api
from verticalize.errors import VerticalizeError
from verticalize.metrics import lower_is_better
from verticalize.mlflow_store import CHALLENGER, CHAMPION
from verticalize.web.pages import render, root
from verticalize.web.tracked import loaded_projects, model_store, store_cached

router = APIRouter()
DEFAULT_MARGIN = 0.03


def registry_stores(folder: Path) -> dict[str, dict]:
    """Each registry the projects under `folder` use: {uri: {projects, margins}} where
    margins maps a model name to its project's registry.margin."""
    stores: dict[str, dict] = {}
    for item in loaded_projects(folder)[0]:
        entry = stores.setdefault(model_store(item), {"projects": [], "margins": {}})
        entry["projects"].append(item.project.key)
        name = item.cfg.registry.model_name or item.cfg.name
        entry["margins"].setdefault(name, item.cfg.registry.margin)
    return stores


def registered_models(stores: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """One entry per (store, model): its versions (newest first), champion and challenger
    rows and the margin its project sets; plus the registries that could not be read."""
    models, problems = [], []
    for uri, entry in stores.items():
        try:
            rows = store_cached("versions", uri, lambda u=uri: api.versions(tracking_uri=u))
        except VerticalizeError as e:
            problems.append(str(e))
            continue
        for name in dict.fromkeys(r["name"] for r in rows):
            mine = [r for r in rows if r["name"] == name]
            models.append(
                {
                    "name": name,
                    "store": uri,
                    "projects": entry["projects"],
                    "margin": entry["margins"].get(name, DEFAULT_MARGIN),
                    "versions": mine[::-1],
                    "champion": _holder(mine, CHAMPION),
                    "challenger": _holder(mine, CHALLENGER),
                }
            )
    return models, problems


def _holder(rows: list[dict], alias: str) -> dict | None:
    return next((r for r in rows if alias in r["aliases"]), None)


def _page(request: Request, status: int = 200, decision: dict | None = None):
    folder = root(request)
    models, problems = registered_models(registry_stores(folder))
    return render(
        request,
        "registry.html.j2",
        status,
        nav="registry",
        models=models,
        problems=problems,
        decision=decision,
        root=str(folder.resolve()),
    )


@router.get("/registry", response_class=HTMLResponse)
def registry_page(request: Request):
    return _page(request)


def _model(request: Request, name: str, store: str) -> dict:
    """The model `name` in the registry `store`, which must be one of the projects'; 4xx
    with what to pick otherwise."""
    stores = registry_stores(root(request))
    if store not in stores:
        raise HTTPException(
            422,
            f"store: {store!r} is not the registry of any project under this folder. Fix: use "
            f"one listed on /registry ({', '.join(stores) or 'none yet'}).",
        )
    models, problems = registered_models({store: stores[store]})
    if problems:
        raise HTTPException(409, problems[0])
    found = next((m for m in models if m["name"] == name), None)
    if found is None:
        known = ", ".join(repr(m["name"]) for m in models) or "none"
        raise HTTPException(
            404,
            f"name: no registered model {name!r} in {store} (it has {known}). Fix: pick a model "
            "listed on /registry.",
        )
    return found


def _refused(request: Request, error: HTTPException, action: str, name: str):
    """The page with a bad form field's message in the decision panel (its 4xx status)."""
    decision = {"action": action, "name": name, "ok": False, "message": error.detail}
    return _page(request, error.status_code, decision | {"invalid": True})


def _margin(text: str, default: float) -> float:
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise HTTPException(
            422,
            f"margin: {text!r} is not a number >= 0. Fix: give the gain the challenger must "
            f"show, e.g. {default:g} (= its project's registry.margin).",
        )
    return value


def _gain(metric: str | None, champion: dict | None, challenger: dict | None) -> float | None:
    if not (metric and champion and challenger):
        return None
    if champion["value"] is None or challenger["value"] is None:
        return None
    diff = challenger["value"] - champion["value"]
    return -diff if lower_is_better(metric) else diff


@router.post("/registry/promote", response_class=HTMLResponse)
def promote(
    request: Request,
    name: str = Form(""),
    store: str = Form(""),
    margin: str = Form(""),
    force: str = Form(""),
):
    """Run the promotion gate; the page shows its decision with both scores and the margin
    (a refusal: 409)."""
    try:
        model = _model(request, name, store)
        gate_margin = _margin(margin, model["margin"])
    except HTTPException as e:
        return _refused(request, e, "promote", name)
    champion, challenger = model["champion"], model["challenger"]
    metric = (challenger or {}).get("metric")
    decision = {
        "action": "promote",
        "name": name,
        "margin": gate_margin,
        "forced": bool(force),
        "metric": metric,
        "champion": champion,
        "challenger": challenger,
        "gain": _gain(metric, champion, challenger),
        "champion_value": (champion or {}).get("value"),
        "challenger_value": (challenger or {}).get("value"),
    }
    try:
        result = api.promote(name, tracking_uri=store, margin=gate_margin, force=bool(force))
    except VerticalizeError as e:
        return _page(request, 409, decision | {"ok": False, "message": str(e)})
    decision |= {
        "ok": True,
        "metric": result["metric"],
        "gain": result["gain"],
        "champion_value": result["before"]["value"],
        "challenger_value": result["after"]["value"],
    }
    promoted, before = result["after"]["version"], result["before"]["version"]
    decision["message"] = (
        f"{name}: version {promoted} is now the champion"
        + (f" (it replaced version {before})" if before else " (there was none before)")
        + (", forced past the margin." if result["forced"] else ".")
    )
    return _page(request, 200, decision)


@router.post("/registry/rollback", response_class=HTMLResponse)
def rollback(request: Request, name: str = Form(""), store: str = Form("")):
    """Give the champion alias back to the previous champion (nothing to undo: 409)."""
    try:
        model = _model(request, name, store)
    except HTTPException as e:
        return _refused(request, e, "rollback", name)
    decision = {"action": "rollback", "name": name, "champion": model["champion"]}
    try:
        result = api.rollback(name, tracking_uri=store)
    except VerticalizeError as e:
        return _page(request, 409, decision | {"ok": False, "message": str(e)})
    decision |= {
        "ok": True,
        "before": result["before"],
        "after": result["after"],
        "message": f"{name}: the champion is version {result['after']['version']} again; "
        f"version {result['rolled_back']} is marked rolled_back.",
    }
    return _page(request, 200, decision)
