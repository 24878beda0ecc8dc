"""The NER run report page (M2): one self-contained HTML file — targets, model vs baselines,
per-type scores with a bar chart, the worst test sentences with gold and predicted entities
highlighted in the text, the loss curves, timing."""

from __future__ import annotations

import math
import zlib
from importlib.resources import files

from jinja2 import ChainableUndefined, Environment, Undefined
from markupsafe import Markup, escape

from verticalize.charts import bar_chart

# light backgrounds, distinct enough for up to ten entity types side by side
PALETTE = (
    "#ffd8a8",
    "#b2f2bb",
    "#a5d8ff",
    "#eebefa",
    "#ffec99",
    "#99e9f2",
    "#fcc2d7",
    "#d0bfff",
    "#c0eb75",
    "#ffc9c9",
)
SUMMARY_METRICS = (
    "entity_f1_micro",
    "entity_f1_macro",
    "entity_precision_micro",
    "entity_recall_micro",
)
_LOWER_IS_BETTER = ("latency", "seconds", "loss", "perplexity")


def type_colour(kind: str, colours: dict[str, str] | None = None) -> str:
    """Background colour of entity type `kind`: from `colours`, else a stable palette pick."""
    if colours and kind in colours:
        return colours[kind]
    return PALETTE[zlib.crc32(kind.encode("utf-8")) % len(PALETTE)]


def _span(span, n: int) -> tuple[int, int, str, float | None] | None:
    """(start, end, TYPE, score) of a [start, end, TYPE(, score)] span inside a text of `n`
    characters; None for anything malformed or out of bounds."""
    try:
        s, e, kind = int(span[0]), int(span[1]), str(span[2])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    if not 0 <= s < e <= n:
        return None
    score = span[3] if len(span) > 3 else None
    if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
        score = None
    return s, e, kind, score


def highlight(
    text: str,
    spans: list,
    other_spans: list | None = None,
    *,
    kind: str = "pred",
    colours: dict[str, str] | None = None,
) -> Markup:
    """`text` as HTML with each of `spans` (character offsets) in a <mark>, coloured by type,
    its type as a small label. `other_spans` is the other side for comparison: with
    kind="pred" a span that exactly matches one of them is correct (class ent-ok), else wrong
    (ent-wrong); with kind="gold" a match is found (ent-ok), else missed (ent-missed). A score
    (4th element) goes into the title. Spans may come in any order; one that overlaps a span
    already drawn, is out of bounds or malformed is skipped. Text between marks is escaped."""
    text = text if isinstance(text, str) else ""
    n = len(text)
    others = set()
    for o in other_spans or []:
        o = _span(o, n)
        if o is not None:
            others.add(o[:3])
    items = sorted(
        (x for x in (_span(sp, n) for sp in spans or []) if x), key=lambda x: (x[0], -x[1])
    )
    out: list[Markup] = []
    cursor = 0
    for s, e, label, score in items:
        if s < cursor:  # overlaps a span already drawn
            continue
        hit = (s, e, label) in others
        status = "ok" if hit else ("wrong" if kind == "pred" else "missed")
        word = {
            "ok": "correct" if kind == "pred" else "found",
            "wrong": "wrong",
            "missed": "missed",
        }
        title = f"{label} · {word[status]}" + ("" if score is None else f" · score {score:.3f}")
        out.append(escape(text[cursor:s]))
        out.append(
            Markup(
                '<mark class="ent ent-{}" style="background:{}" data-type="{}" data-start="{}" '
                'data-end="{}"{} title="{}">{}<span class="lab">{}</span></mark>'
            ).format(
                status,
                type_colour(label, colours),
                label,
                s,
                e,
                Markup("") if score is None else Markup(' data-score="{:.4f}"').format(score),
                title,
                text[s:e],
                label,
            )
        )
        cursor = e
    out.append(escape(text[cursor:]))
    return Markup("").join(out)


def _num(value, digits: int = 4) -> str:
    """A metric or count for a table cell; "—" when it is missing."""
    if value is None or isinstance(value, Undefined):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _delta(metric: str, a, b) -> tuple[str, str]:
    """(text, css class) of model − baseline on `metric`; better/worse by its direction."""
    if not (_is_number(a) and _is_number(b)):
        return "—", ""
    d = a - b
    lower = any(w in metric for w in _LOWER_IS_BETTER)
    better = d < 0 if lower else d > 0
    return f"{d:+.4f}", ("better" if better else "worse" if d else "")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def render_ner_html(report: dict, loss_chart: str) -> str:
    """The NER report page for `report` (see the report.json of an NER run); `loss_chart` is
    an inline SVG (report.line_chart). Missing optional keys render as "—" or are left out."""
    r = _dict(report)
    model = _dict(r.get("model"))
    metrics = _dict(model.get("metrics"))
    baselines = {
        str(name): {**_dict(b), "metrics": _dict(_dict(b).get("metrics"))}
        for name, b in _dict(r.get("baselines")).items()
    }
    train, ner, data = _dict(r.get("train")), _dict(r.get("ner")), _dict(r.get("data"))
    summary = list(r.get("summary_metrics") or SUMMARY_METRICS)

    per_type = _dict(metrics.get("per_type"))
    types = sorted(
        {str(t) for t in per_type}
        | {str(t) for b in baselines.values() for t in _dict(b["metrics"].get("per_type"))},
        key=lambda t: (-(_dict(per_type.get(t)).get("support") or 0), t),
    )
    colours = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(sorted(types))}
    type_rows = []
    groups: dict[str, dict[str, float]] = {}
    for t in types:
        m = _dict(per_type.get(t))
        base_f1 = {
            name: _dict(_dict(b["metrics"].get("per_type")).get(t)).get("f1")
            for name, b in baselines.items()
        }
        type_rows.append({"type": t, "colour": colours[t], "m": m, "base_f1": base_f1})
        groups[t] = {
            name: float(v) for name, v in {"model": m.get("f1"), **base_f1}.items() if _is_number(v)
        }
    f1_chart = bar_chart(groups, "per-type entity F1") if groups else ""

    worst = []
    for w in r.get("worst") or []:
        w = _dict(w)
        text = w.get("text") if isinstance(w.get("text"), str) else ""
        gold, pred = w.get("gold") or [], w.get("pred") or []
        worst.append(
            {
                "id": w.get("id"),
                "errors": w.get("errors"),
                "gold_html": highlight(text, gold, pred, kind="gold", colours=colours),
                "pred_html": highlight(text, pred, gold, kind="pred", colours=colours),
                "n_gold": len(gold),
                "n_pred": len(pred),
            }
        )

    base_model = train.get("base_model") or r.get("base_model")
    if isinstance(base_model, dict):
        base_model = base_model.get("name") or base_model.get("path")
    train_extra = {
        k: v
        for k, v in train.items()
        if k not in ("base_model", "method", "stages")
        and (v is None or isinstance(v, str | int | float))
    }
    sources = []
    for s in data.get("sources") or []:
        if isinstance(s, dict):
            s = (
                s.get("path")
                or s.get("name")
                or s.get("uri")
                or ", ".join(f"{k}={v}" for k, v in s.items())
            )
        sources.append(str(s))

    env = Environment(autoescape=True, undefined=ChainableUndefined)
    env.filters["num"] = _num
    env.globals["delta"] = _delta
    template = env.from_string(
        (files("verticalize.tasks.ner") / "ner_report.html.j2").read_text(encoding="utf-8")
    )
    return template.render(
        r=r,
        model=model,
        metrics=metrics,
        baselines=baselines,
        summary=summary,
        targets=[_dict(t) for t in r.get("targets") or []],
        type_rows=type_rows,
        colours=colours,
        f1_chart=Markup(f1_chart),
        worst=worst,
        train=train,
        train_extra=train_extra,
        base_model=base_model,
        ner=ner,
        data=data,
        sources=sources,
        timing=_dict(r.get("timing")),
        loss_chart=Markup(loss_chart or ""),
    )
