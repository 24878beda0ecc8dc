"""The run report (E6): report.json for tools, one self-contained report.html for people."""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment

from verticalize.runfolder import write_json_atomic


def _scaler(points: list[tuple[float, float]], width: int, height: int, pad: int = 30):
    """Map data (x, y) to SVG coordinates; one scale for every series, so lines compare."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, y0 = min(xs), min(ys)
    x1 = max(xs) if max(xs) > x0 else x0 + 1
    y1 = max(ys) if max(ys) > y0 else y0 + 1

    def to_svg(x: float, y: float) -> str:
        sx = pad + (x - x0) / (x1 - x0) * (width - 2 * pad)
        sy = height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)
        return f"{sx:.1f},{sy:.1f}"

    return to_svg, (y0, y1)


def line_chart(series: dict[str, list[tuple[float, float]]], title: str) -> str:
    """An inline SVG line chart: one coloured line per series on a shared y axis."""
    width, height, colours = 560, 220, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [
        f'<svg class="plot" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
        f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>'
    ]
    everything = [p for pts in series.values() for p in pts]
    if everything:
        to_svg, (y0, y1) = _scaler(everything, width, height)
        parts.append(
            f'<text x="2" y="{height - 30}" font-size="10">{y0:.3g}</text>'
            f'<text x="2" y="34" font-size="10">{y1:.3g}</text>'
        )
        for i, (name, pts) in enumerate(s for s in series.items() if s[1]):
            c = colours[i % len(colours)]
            line = " ".join(to_svg(x, y) for x, y in pts)
            parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{line}"/>')
            parts.append(
                f'<text x="{40 + 260 * (i % 2)}" y="{14 + 13 * (i // 2)}" fill="{c}" '
                f'font-size="12">{html.escape(name)}</text>'
            )
    parts.append(f'<text x="{width - 120}" y="{height - 8}" font-size="11">step →</text></svg>')
    return "".join(parts)


def bar_chart(groups: dict[str, dict[str, float]], title: str) -> str:
    """Grouped horizontal bars in [0, 1]: one group per class, one bar per system."""
    systems = sorted({s for g in groups.values() for s in g})
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    row_h, width = 14, 560
    height = 30 + len(groups) * (len(systems) * row_h + 10)
    parts = [
        f'<svg class="plot" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
    ]
    y = 24
    for i, s in enumerate(systems):
        parts.append(
            f'<text x="{140 + 140 * i}" y="12" font-size="12" fill="{colours[i % 4]}">'
            f"{html.escape(s)}</text>"
        )
    for cls, values in groups.items():
        parts.append(f'<text x="0" y="{y + row_h}" font-size="12">{html.escape(cls)}</text>')
        for i, s in enumerate(systems):
            v = values.get(s, 0.0)
            parts.append(
                f'<rect x="130" y="{y}" width="{v * 380:.1f}" height="{row_h - 2}" '
                f'fill="{colours[i % 4]}"/><text x="{135 + v * 380:.1f}" y="{y + 11}" '
                f'font-size="10">{v:.3f}</text>'
            )
            y += row_h
        y += 10
    parts.append("</svg>")
    return "".join(parts)


def heat_colour(value: int, row_total: int) -> str:
    share = value / row_total if row_total else 0.0
    return f"rgba(31,119,180,{0.08 + 0.85 * share:.2f})"


def write_report(report: dict, history: list[dict], out_dir: Path) -> tuple[Path, Path]:
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
    loss_chart = line_chart(series, "loss curves")
    env = Environment(autoescape=True)
    if report["task"] == "generation":
        template = env.from_string(
            (files("verticalize.evaluate") / "generation_report.html.j2").read_text("utf-8")
        )
        html_path.write_text(template.render(r=report, loss_chart=loss_chart), encoding="utf-8")
        return json_path, html_path
    if report["task"] == "ner":
        from verticalize.evaluate.ner_report import render_ner_html

        html_path.write_text(render_ner_html(report, loss_chart), encoding="utf-8")
        return json_path, html_path
    per_class = {
        lab: {"model": v["f1"]} for lab, v in report["model"]["metrics"]["per_class"].items()
    }
    for name, base in report["baselines"].items():
        for lab, v in base["metrics"]["per_class"].items():
            per_class[lab][name] = v["f1"]
    env.globals["heat_colour"] = heat_colour
    template = env.from_string(
        (files("verticalize.evaluate") / "report.html.j2").read_text(encoding="utf-8")
    )
    robustness = {
        row["noise"]: {k: row[k] for k in row.get("drops", {})}
        for row in report.get("robustness") or []
    }
    html_path.write_text(
        template.render(
            r=report,
            loss_chart=loss_chart,
            f1_chart=bar_chart(per_class, "per-class F1"),
            robustness_chart=bar_chart(robustness, "scores under noise") if robustness else "",
        ),
        encoding="utf-8",
    )
    return json_path, html_path
