"""The Review tab: an expert accepts or corrects the model's mistakes and least confident
answers (a label, or NER spans selected in the text); every decision records who took it
and when; the decisions export as a Label Studio source that the project's next run reads."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from verticalize.web.pages import project, render
from verticalize.web.review_export import (
    ExportError,
    add_review_source,
    export_path,
    exported_count,
    write_export,
)
from verticalize.web.review_queue import (
    ReviewInputError,
    load_run_items,
    queue,
    read_decisions,
    record_decision,
    segments,
    slug,
)

router = APIRouter()


@router.get("/review/{key:path}", response_class=HTMLResponse)
def review_page(request: Request, key: str):
    p = project(request, key)
    run_items = load_run_items(p)
    decisions = read_decisions(p)
    items = queue(run_items)
    return render(
        request,
        "review.html.j2",
        project=p,
        active_tab="review",
        run=run_items,
        items=items,
        n_mistakes=sum(1 for i in run_items.items.values() if i["mistake"]),
        n_decided=sum(1 for i in run_items.items if i in decisions),
        decisions=decisions,
        export=_export_state(p),
        segments=segments,
        slug=slug,
    )


@router.post("/review/decide/{key:path}", response_class=HTMLResponse)
async def decide(request: Request, key: str):
    """Record one decision; answers the item's refreshed HTML (422 with the reason)."""
    p = project(request, key)
    form = {k: str(v) for k, v in (await request.form()).items()}
    run_items = load_run_items(p)
    if run_items.problem:
        raise HTTPException(409, f"nothing to review: {run_items.problem}")
    try:
        decision = record_decision(p, run_items, form)
    except ReviewInputError as e:
        raise HTTPException(422, str(e)) from None
    return render(
        request,
        "review_item.html.j2",
        project=p,
        run=run_items,
        item=run_items.items[decision["id"]],
        decision=decision,
        segments=segments,
        slug=slug,
    )


@router.post("/review/export/{key:path}", response_class=HTMLResponse)
def export(request: Request, key: str):
    """Write review/labelstudio.json and add it to data.sources (once)."""
    p = project(request, key)
    try:
        write_export(p, read_decisions(p))
    except ExportError as e:
        raise HTTPException(422, str(e)) from None
    state = _export_state(p)
    try:
        state["source"] = "added" if add_review_source(p) else "present"
    except ExportError as e:
        state["source"], state["source_error"] = "failed", str(e)
    return render(request, "review_export.html.j2", project=p, export=state)


def _export_state(p) -> dict:
    path = export_path(p)
    return {
        "path": path.relative_to(p.folder).as_posix(),
        "full_path": str(path),
        "count": exported_count(p),
    }
