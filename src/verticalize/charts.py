"""Self-contained SVG charts for the HTML reports (data, evaluation, tasks): no JavaScript
library and no CDN, so a report opens offline."""

from __future__ import annotations

import html


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


def _svg_open(width: int, height: int, title: str, plot_id: str | None) -> str:
    """The opening <svg> of a chart: class "plot", an optional id, an accessible <title>.
    No xmlns: inline SVG in HTML needs none, and the page holds no URL at all."""
    ident = f' id="{html.escape(plot_id)}"' if plot_id else ""
    return (
        f'<svg class="plot"{ident} width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
    )


def line_chart(
    series: dict[str, list[tuple[float, float]]], title: str, plot_id: str | None = None
) -> str:
    """An inline SVG line chart: one coloured line per series on a shared y axis."""
    width, height, colours = 560, 220, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [
        _svg_open(width, height, title, plot_id),
        f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>',
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


def bar_chart(groups: dict[str, dict[str, float]], title: str, plot_id: str | None = None) -> str:
    """Grouped horizontal bars in [0, 1]: one group per class, one bar per system."""
    systems = sorted({s for g in groups.values() for s in g})
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    row_h, width = 14, 560
    height = 30 + len(groups) * (len(systems) * row_h + 10)
    parts = [_svg_open(width, height, title, plot_id)]
    y = 24
    for i, s in enumerate(systems):
        parts.append(
            f'<text x="{140 + 140 * i}" y="12" font-size="12" fill="{colours[i % 4]}">'
            f"{html.escape(s)}</text>"
        )
    for cls, values in groups.items():
        parts.append(
            f'<text x="0" y="{y + row_h}" font-size="12"><title>{html.escape(cls)}</title>'
            f"{html.escape(_short(cls, 18))}</text>"
        )
        for i, s in enumerate(systems):
            v = values.get(s)
            v = 0.0 if v is None else float(v)
            w = min(max(v, 0.0), 1.0) * 380  # a bar never leaves the chart
            parts.append(
                f'<rect x="130" y="{y}" width="{w:.1f}" height="{row_h - 2}" '
                f'fill="{colours[i % 4]}"/><text x="{135 + w:.1f}" y="{y + 11}" '
                f'font-size="10">{v:.3f}</text>'
            )
            y += row_h
        y += 10
    parts.append("</svg>")
    return "".join(parts)


def heat_colour(value: int, row_total: int) -> str:
    """A cell's background: darker blue the larger its share of its (gold) row."""
    share = value / row_total if row_total else 0.0
    return f"rgba(31,119,180,{0.08 + 0.85 * share:.2f})"


def _short(label: str, n: int = 16) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def confusion_heatmap(
    labels: list[str], matrix: list[list[int]], plot_id: str = "plot-confusion"
) -> str:
    """The confusion matrix as an SVG heat-map: rows gold, columns predicted, each cell coloured
    by its share of the row (heat_colour) with its count written in it."""
    k = len(labels)
    title = "confusion matrix heat-map (rows: gold, columns: predicted; colour: share of row)"
    cell = max(14, min(56, 420 // max(k, 1)))
    left, top = 130, 90
    width, height = left + k * cell + 20, top + k * cell + 20
    parts = [_svg_open(width, height, title, plot_id)]
    parts.append(
        f'<text x="{left}" y="12" font-size="11">predicted →</text>'
        f'<text x="2" y="{top - 6}" font-size="11">gold ↓</text>'
    )
    for j, lab in enumerate(labels):  # column heads, slanted so long labels fit
        x, y = left + j * cell + cell / 2, top - 6
        parts.append(
            f'<text x="{x:.1f}" y="{y}" font-size="11" transform="rotate(-40 {x:.1f} {y})">'
            f"<title>{html.escape(lab)}</title>{html.escape(_short(lab))}</text>"
        )
    for i, row in enumerate(matrix):
        total = sum(row)
        y = top + i * cell
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" font-size="11" text-anchor="end">'
            f"<title>{html.escape(labels[i])}</title>{html.escape(_short(labels[i]))}</text>"
        )
        for j, v in enumerate(row):
            x = left + j * cell
            share = v / total if total else 0.0
            tip = f"gold {labels[i]}, predicted {labels[j]}: {v} ({share:.1%} of the row)"
            parts.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{heat_colour(v, total)}" stroke="#fff"><title>{html.escape(tip)}</title></rect>'
            )
            if cell >= 20:
                colour = "#fff" if share > 0.5 else "#222"
                parts.append(
                    f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" font-size="11" '
                    f'text-anchor="middle" fill="{colour}">{v}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def reliability_chart(cal: dict, plot_id: str = "plot-reliability") -> str:
    """A reliability diagram: per confidence bin, a bar of the accuracy against the diagonal of
    perfect calibration, the gap to the bin's mean confidence outlined in red; ECE in the title.
    `cal` is calibration.calibration(...)."""
    title = f"reliability diagram — ECE {cal['ece']:.4f}, MCE {cal['mce']:.4f}, n = {cal['n']}"
    width, height, left, top, size = 420, 380, 50, 30, 300
    bottom = top + size

    def sx(v: float) -> float:
        return left + v * size

    def sy(v: float) -> float:
        return bottom - v * size

    parts = [
        _svg_open(width, height, title, plot_id),
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="#fff" stroke="#ccc"/>',
        f'<text x="{left}" y="18" font-size="12">{html.escape(title)}</text>',
    ]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):  # grid and ticks
        parts.append(
            f'<line x1="{left}" y1="{sy(t):.1f}" x2="{left + size}" y2="{sy(t):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{t:g}</text><text x="{sx(t):.1f}" y="{bottom + 14}" '
            f'font-size="10" text-anchor="middle">{t:g}</text>'
        )
    n = max(cal["n"], 1)
    for b in cal["bins"]:
        if not b["count"]:
            continue
        x, w = sx(b["low"]), (b["high"] - b["low"]) * size
        acc, conf = b["accuracy"], b["confidence"]
        tip = (
            f"confidence {b['low']:.2f}–{b['high']:.2f}: {b['count']} predictions "
            f"({b['count'] / n:.1%}), mean confidence {conf:.3f}, accuracy {acc:.3f}"
        )
        parts.append(
            f'<rect class="bin" x="{x:.1f}" y="{sy(acc):.1f}" width="{w:.1f}" '
            f'height="{acc * size:.1f}" fill="#1f77b4" fill-opacity="0.8" stroke="#fff">'
            f"<title>{html.escape(tip)}</title></rect>"
        )
        lo, hi = min(acc, conf), max(acc, conf)
        if hi - lo > 1e-9:  # the calibration gap of the bin
            parts.append(
                f'<rect class="gap" x="{x:.1f}" y="{sy(hi):.1f}" width="{w:.1f}" '
                f'height="{(hi - lo) * size:.1f}" fill="#d62728" fill-opacity="0.25" '
                f'stroke="#d62728" stroke-width="1"/>'
            )
        parts.append(
            f'<text x="{x + w / 2:.1f}" y="{bottom - 3}" font-size="9" '
            f'fill="{"#fff" if acc > 0.06 else "#222"}" '
            f'text-anchor="middle">{b["count"]}</text>'
        )
    parts.append(
        f'<path d="M{sx(0)},{sy(0)} L{sx(1)},{sy(1)}" stroke="#555" stroke-dasharray="4 3" '
        f'fill="none"><title>perfect calibration</title></path>'
        f'<text x="{left + size / 2}" y="{bottom + 30}" font-size="11" text-anchor="middle">'
        f"confidence (top-class probability)</text>"
        f'<text x="14" y="{top + size / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + size / 2})">accuracy</text>'
        f'<rect x="{left + size + 8}" y="{top + 4}" width="10" height="10" fill="#1f77b4"/>'
        f'<text x="{left + size + 8}" y="{top + 26}" font-size="10">acc.</text>'
        f'<rect x="{left + size + 8}" y="{top + 34}" width="10" height="10" fill="#d62728" '
        f'fill-opacity="0.25" stroke="#d62728"/>'
        f'<text x="{left + size + 8}" y="{top + 56}" font-size="10">gap</text></svg>'
    )
    return "".join(parts)


def robustness_chart(report: dict, plot_id: str = "plot-robustness") -> str:
    """Bars of the model's scores clean, under each kind of character noise and under each
    adversarial attack; "" when the report has neither."""
    rows = report.get("robustness") or []
    attacks = report.get("adversarial") or {}
    if not rows and not attacks:
        return ""
    metrics = list(rows[0].get("drops", {})) if rows else ["macro_f1", "accuracy"]
    clean = report["model"]["metrics"]
    groups: dict[str, dict[str, float]] = {"clean": {k: clean[k] for k in metrics if k in clean}}
    for row in rows:
        groups[f"noise: {row['noise']}"] = {k: row[k] for k in metrics if k in row}
    names = {"fgsm": "FGSM", "substitution": "word substitution"}
    for name, a in attacks.items():
        if isinstance(a, dict):
            groups[f"attack: {names.get(name, name)}"] = {k: a[k] for k in metrics if k in a}
    rate = f" ({100 * rows[0]['rate']:.0f}% character noise)" if rows else ""
    return bar_chart(groups, f"robustness: scores clean, noisy{rate} and attacked", plot_id)
