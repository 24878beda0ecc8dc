"""The classification report page: per-class F1, confusion matrix, calibration, robustness
and error analysis around the shared verdict / targets / baselines tables."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from jinja2 import Environment

from verticalize.charts import (
    bar_chart,
    confusion_heatmap,
    heat_colour,
    reliability_chart,
    robustness_chart,
)


def _error_analysis(report: dict) -> dict | None:
    """The error-analysis block for the page: the top 5 confusion pairs, most frequent first;
    the Label Studio files by name (they sit next to report.html), None where none was written
    (a sensitive test split)."""
    ea = report.get("error_analysis")
    if not ea:
        return None
    pairs = sorted(ea.get("confusion_pairs") or [], key=lambda p: -p.get("count", 0))[:5]
    relabel = dict(ea.get("relabel") or {})
    for key in ("file", "config"):
        relabel[f"{key}_name"] = Path(relabel[key]).name if relabel.get(key) else None
    gold_prob = any("gold_prob" in x for p in pairs for x in p.get("examples") or [])
    return {**ea, "confusion_pairs": pairs, "relabel": relabel, "gold_prob": gold_prob}


def render_classification(report: dict, loss_chart: str) -> str:
    env = Environment(autoescape=True)
    metrics = report["model"]["metrics"]
    per_class = {lab: {"model": v["f1"]} for lab, v in metrics["per_class"].items()}
    for name, base in report["baselines"].items():
        for lab, v in base["metrics"]["per_class"].items():
            per_class.setdefault(lab, {})[name] = v["f1"]
    env.globals["heat_colour"] = heat_colour
    template = env.from_string(
        (files("verticalize.tasks.classification") / "report.html.j2").read_text(encoding="utf-8")
    )
    cm = metrics["confusion_matrix"]
    cal = metrics.get("calibration")
    return template.render(
        r=report,
        loss_chart=loss_chart,
        f1_chart=bar_chart(per_class, "per-class F1", "plot-f1"),
        confusion_chart=confusion_heatmap(cm["labels"], cm["matrix"]),
        robustness_chart=robustness_chart(report),
        reliability_chart=reliability_chart(cal) if cal and cal.get("n") else "",
        calibration=cal,
        errors=_error_analysis(report),
    )
