"""The multi-label report page: the shared verdict / targets / comparison tables, and per
label its threshold, precision, recall and F1 beside the baselines'."""

from __future__ import annotations

from importlib.resources import files

from jinja2 import Environment

from verticalize.charts import bar_chart


def render_multilabel(report: dict, loss_chart: str) -> str:
    metrics = report["model"]["metrics"]
    per_label = {lab: {"model": v["f1"]} for lab, v in metrics["per_class"].items()}
    for name, base in report["baselines"].items():
        for lab, v in base["metrics"]["per_class"].items():
            per_label.setdefault(lab, {})[name] = v["f1"]
    template = Environment(autoescape=True).from_string(
        (files("verticalize.tasks.multilabel") / "report.html.j2").read_text(encoding="utf-8")
    )
    return template.render(
        r=report, loss_chart=loss_chart, f1_chart=bar_chart(per_label, "per-label F1", "plot-f1")
    )
