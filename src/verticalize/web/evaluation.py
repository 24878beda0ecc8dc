"""The Evaluation tab, read from the run folder's eval/report.json: the targets against what
was achieved, the headline (the model, the strongest baseline and the margin with its CI and
p-value, the verdict), the run's own eval/report.html embedded, and the error analysis."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from verticalize.metrics import metric_value
from verticalize.web.pages import project, render
from verticalize.web.projects import config_error, run_dir

router = APIRouter()

# the report is the run's own HTML: shown in a frame with no scripts and no same-origin access
REPORT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def number(value) -> str:
    """A metric as the page shows it: 4 decimals for fractions, integers as they are."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def target_rows(report: dict) -> list[dict]:
    """Each target: the metric, what was wanted, what was achieved, met or not."""
    rows = []
    for t in report.get("targets") or []:
        if not isinstance(t, dict):
            continue
        wanted = t.get("target_text") or (
            f"{'≤' if t.get('direction') == 'min' else '≥'} {number(t.get('target'))}"
        )
        rows.append(
            {
                "metric": t.get("metric", ""),
                "wanted": wanted,
                "achieved": number(t.get("achieved")),
                "met": bool(t.get("met")),
            }
        )
    return rows


def headline(report: dict) -> dict:
    """The summary metrics of the model and every baseline, strongest baseline first."""
    model = (report.get("model") or {}).get("metrics") or {}
    baselines = report.get("baselines") or {}
    strongest = (report.get("strongest_baseline") or {}).get("name")
    columns = [("model", "fine-tuned model", model)]
    if strongest in baselines:
        columns.append((strongest, f"{strongest} (strongest baseline)", baselines[strongest]))
    columns += [(n, n, b) for n, b in baselines.items() if n != strongest]
    base_model = report.get("base_model")
    if isinstance(base_model, dict) and isinstance(base_model.get("metrics"), dict):
        columns.append(("base", f"base model {base_model.get('name', '')}", base_model))
    names = report.get("summary_metrics") or [
        k for k, v in model.items() if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    cells = [
        (key, title, m if key == "model" else (m.get("metrics") or {})) for key, title, m in columns
    ]
    return {
        "columns": [(key, title) for key, title, _ in cells],
        "rows": [
            {"metric": name, "cells": [number(metric_value(m, name)) for _, _, m in cells]}
            for name in names
        ],
    }


def margin_view(report: dict) -> dict | None:
    """The margin over the strongest baseline, formatted: Δ, CI, p-value, test, n."""
    m = report.get("margin")
    if not isinstance(m, dict) or "delta" not in m:
        return None
    confidence = m.get("confidence")
    return {
        "baseline": (report.get("strongest_baseline") or {}).get("name", ""),
        "metric": m.get("metric", ""),
        "delta": f"{m['delta']:+.4f}" if isinstance(m["delta"], int | float) else str(m["delta"]),
        "ci_low": f"{m['ci_low']:+.4f}" if isinstance(m.get("ci_low"), int | float) else "—",
        "ci_high": f"{m['ci_high']:+.4f}" if isinstance(m.get("ci_high"), int | float) else "—",
        "confidence": f"{confidence:.0%}" if isinstance(confidence, int | float) else "",
        "p_value": f"{m['p_value']:.3g}" if isinstance(m.get("p_value"), int | float) else "—",
        "test": "McNemar" if m.get("test") == "mcnemar" else (m.get("test") or "bootstrap"),
        "n": m.get("n", ""),
    }


def errors_view(report: dict) -> dict:
    """What the report holds for error analysis, whichever task wrote it: the confusion
    matrix and confused pairs (classification), the worst sentences (NER), samples
    (generation)."""
    metrics = (report.get("model") or {}).get("metrics") or {}
    matrix = metrics.get("confusion_matrix")
    if not (isinstance(matrix, dict) and matrix.get("labels") and matrix.get("matrix")):
        matrix = None
    analysis = report.get("error_analysis")
    return {
        "matrix": matrix,
        "analysis": analysis if isinstance(analysis, dict) else None,
        "worst": [w for w in report.get("worst") or [] if isinstance(w, dict)],
        "samples": [s for s in report.get("samples") or [] if isinstance(s, dict)],
        "per_class": metrics.get("per_class") or metrics.get("per_type") or {},
    }


def _report_html(p) -> Path:
    """The run's eval/report.html, confined to its run folder (404 otherwise)."""
    folder = run_dir(p)
    if folder is None:
        raise HTTPException(404, f"no run folder for {p.key!r}: its configuration does not load")
    path = (folder / "eval" / "report.html").resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise HTTPException(404, f"no evaluation report for {p.key!r} yet")
    return path


@router.get("/evaluation/report/{key:path}")
def report_file(request: Request, key: str):
    """The run's own eval/report.html (charts included), and no other file."""
    path = _report_html(project(request, key))
    return FileResponse(
        path,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": REPORT_POLICY},
    )


@router.get("/evaluation/{key:path}", response_class=HTMLResponse)
def evaluation_page(request: Request, key: str):
    p = project(request, key)
    base = {"project": p, "active_tab": "evaluation"}
    folder = run_dir(p)
    if folder is None:
        problem = config_error(p.config_path) or "the configuration does not load"
        return render(request, "evaluation.html.j2", missing=f"No report: {problem}", **base)
    path = folder / "eval" / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        message = (
            "No evaluation report yet: the eval stage has not run for this project. Start it "
            f"from the Run tab (Evaluate), or run `verticalize eval {p.config_path.name}` in "
            f"{p.folder}."
        )
        return render(request, "evaluation.html.j2", missing=message, **base)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        message = f"{path} could not be read ({e}). Fix: run `verticalize eval --force` again."
        return render(request, "evaluation.html.j2", missing=message, **base)
    if not isinstance(report, dict):
        message = f"{path} holds no report object. Fix: run `verticalize eval --force` again."
        return render(request, "evaluation.html.j2", missing=message, **base)
    return render(
        request,
        "evaluation.html.j2",
        report=report,
        targets=target_rows(report),
        headline=headline(report),
        margin=margin_view(report),
        errors=errors_view(report),
        has_html=(folder / "eval" / "report.html").is_file(),
        number=number,
        **base,
    )
