"""The data report (D10): per-step accounting, label distributions and text-length
histograms before (as ingested) and after (as written), in data/report.html. Only counts
and aggregate shapes appear here — never record texts, so nothing personal leaks."""

from __future__ import annotations

from collections import Counter
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment

from verticalize.charts import bar_chart

LENGTH_BINS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def length_bin(n: int) -> str:
    low = 0
    for high in LENGTH_BINS:
        if n < high:
            return f"{low}–{high - 1}"
        low = high
    return f"≥{LENGTH_BINS[-1]}"


class DataStats:
    """Label counts and a character-length histogram, collected while records stream by."""

    def __init__(self) -> None:
        self.labels: Counter = Counter()
        self.lengths: Counter = Counter()
        self.n = 0

    def add(self, rec: dict) -> None:
        self.n += 1
        self.labels[str(rec.get("label"))] += 1
        self.lengths[length_bin(len(rec["text"]))] += 1

    def as_dict(self) -> dict:
        order = [length_bin(b - 1) for b in LENGTH_BINS] + [length_bin(LENGTH_BINS[-1])]
        return {
            "records": self.n,
            "labels": dict(sorted(self.labels.items())),
            "length_histogram": {b: self.lengths[b] for b in order if self.lengths[b]},
        }


def _shares(before: dict, after: dict, key: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, stats in (("before", before), ("after", after)):
        total = sum(stats[key].values()) or 1
        for k, v in stats[key].items():
            out.setdefault(k, {})[name] = v / total
    return out


def write_data_report(manifest: dict, before: dict, after: dict, out: Path) -> Path:
    """Render data/report.html from the manifest and the before/after statistics."""
    template = (files("verticalize.data") / "templates" / "data_report.html.j2").read_text(
        encoding="utf-8"
    )
    page = (
        Environment(autoescape=True)
        .from_string(template)
        .render(
            m=manifest,
            before=before,
            after=after,
            label_chart=bar_chart(_shares(before, after, "labels"), "label share before / after"),
            length_chart=bar_chart(
                _shares(before, after, "length_histogram"),
                "text length (characters) before / after",
            ),
        )
    )
    out.write_text(page, encoding="utf-8")
    return out
