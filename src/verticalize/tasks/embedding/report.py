"""The retrieval report page: verdict, targets, model vs baselines on the ranking metrics,
the margin over the strongest baseline, the corpus, per-source scores, the hardest queries."""

from __future__ import annotations

from importlib.resources import files

from jinja2 import Environment


def render_embedding(report: dict, loss_chart: str) -> str:
    template = Environment(autoescape=True).from_string(
        (files("verticalize.tasks.embedding") / "report.html.j2").read_text(encoding="utf-8")
    )
    return template.render(r=report, loss_chart=loss_chart)
