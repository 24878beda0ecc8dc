"""The run report (E6): report.json for tools, one self-contained report.html for people."""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment

from verticalize.runfolder import write_json_atomic


def _polyline(points: list[tuple[float, float]], width: int, height: int, pad: int = 30):
    """Scale (x, y) points into an SVG polyline string plus axis ranges."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    sx = lambda x: pad + (x - x0) / (x1 - x0) * (width - 2 * pad)  # noqa: E731
    sy = lambda y: height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)  # noqa: E731
    return " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points), (x0, x1, y0, y1)


def line_chart(series: dict[str, list[tuple[float, float]]], title: str) -> str:
    """An inline SVG line chart; one coloured line per series."""
    width, height, colours = 560, 220, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [
        f'<svg class="plot" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
        f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>'
    ]
    for i, (name, pts) in enumerate(s for s in series.items() if s[1]):
        line, (x0, x1, y0, y1) = _polyline(pts, width, height)
        c = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{line}"/>')
        parts.append(
            f'<text x="{40 + 170 * i}" y="16" fill="{c}" font-size="12">'
            f"{html.escape(name)} ({y0:.3g}–{y1:.3g})</text>"
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
    train_rows = [r for r in history if r.get("event") == "train"]
    eval_rows = [r for r in history if r.get("event") == "eval"]
    loss_chart = line_chart(
        {
            "train loss": [(r["step"], r["loss"]) for r in train_rows],
            "validation loss": [(r["step"], r["val_loss"]) for r in eval_rows],
        },
        "loss curves",
    )
    per_class = {
        lab: {"model": v["f1"]} for lab, v in report["model"]["metrics"]["per_class"].items()
    }
    for name, base in report["baselines"].items():
        for lab, v in base["metrics"]["per_class"].items():
            per_class[lab][name] = v["f1"]
    env = Environment(autoescape=True)
    env.globals["heat_colour"] = heat_colour
    template = env.from_string(
        (files("verticalize.evaluate") / "report.html.j2").read_text(encoding="utf-8")
    )
    html_path.write_text(
        template.render(
            r=report, loss_chart=loss_chart, f1_chart=bar_chart(per_class, "per-class F1")
        ),
        encoding="utf-8",
    )
    return json_path, html_path
