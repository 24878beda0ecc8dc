"""The generation report page: fine-tuned vs base model, sample answers, training stages."""

from __future__ import annotations

from importlib.resources import files

from jinja2 import Environment


def render_generation(report: dict, loss_chart: str) -> str:
    template = Environment(autoescape=True).from_string(
        (files("verticalize.tasks.generation") / "generation_report.html.j2").read_text("utf-8")
    )
    return template.render(r=report, loss_chart=loss_chart)
