"""The run report (E6): report.json for tools, one self-contained report.html for people.
The page is the task's (`TaskPlugin.render_report`); a task without one gets the basic page:
verdict, targets, model vs baselines, loss curves and timing."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment

from verticalize.charts import line_chart
from verticalize.runfolder import write_json_atomic

Renderer = Callable[[dict, str], str]  # (report, loss chart SVG) -> the page


def render_basic(report: dict, loss_chart: str) -> str:
    """The page for a task that brings none of its own."""
    template = Environment(autoescape=True).from_string(
        (files("verticalize.evaluate") / "basic_report.html.j2").read_text("utf-8")
    )
    return template.render(r=report, loss_chart=loss_chart)


def _contamination_html(section: dict) -> str:
    template = Environment(autoescape=True).from_string(
        (files("verticalize.evaluate") / "contamination.html.j2").read_text("utf-8")
    )
    return template.render(c=section)


def write_report(
    report: dict, history: list[dict], out_dir: Path, render: Renderer | None = None
) -> tuple[Path, Path]:
    """Write report.json and report.html into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_json_atomic(json_path, report)
    series: dict[str, list[tuple[float, float]]] = {}
    for r in history:  # one train and one validation line per training stage
        stage = f"{r['stage']} " if r.get("stage") else ""
        if r.get("event") == "train":
            series.setdefault(f"{stage}train loss", []).append((r["step"], r["loss"]))
        elif r.get("event") == "eval":
            series.setdefault(f"{stage}validation loss", []).append((r["step"], r["val_loss"]))
    loss_chart = line_chart(series, "loss curves", "plot-loss")
    page = (render or render_basic)(report, loss_chart)
    if report.get("contamination"):  # on every task's page, whichever template drew it
        head, body_end, tail = page.rpartition("</body>")
        page = head + _contamination_html(report["contamination"]) + body_end + tail
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path


def record_stage_times(report_json: Path, stages: dict[str, float | None]) -> None:
    """Add the pipeline's wall seconds per stage (data … export, registry; None = skipped)
    to report.json's `timing.stages`, with their sum as `timing.pipeline_s`; the stages
    after eval end after the report is written, so `verticalize run` adds them here."""
    import json

    if not report_json.is_file():
        return
    report = json.loads(report_json.read_text("utf-8"))
    timing = report.setdefault("timing", {})
    timing["stages"] = stages
    timing["pipeline_s"] = round(sum(v for v in stages.values() if v), 2)
    write_json_atomic(report_json, report)
