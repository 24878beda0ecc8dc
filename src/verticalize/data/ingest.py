"""Read every configured source into records {id, text, label, source, line} (D1)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from verticalize.config import DataConfig, Source
from verticalize.data.manifest import Quarantine, StepTally
from verticalize.data.sources import ResolvedSource, read_rows, resolve
from verticalize.errors import DataError


def label_from_bins(value: str, bins: dict[str, tuple[float, float]]) -> str | None:
    """Map a numeric value to the class whose inclusive [low, high] range holds it."""
    number = float(value)
    for name, (low, high) in bins.items():
        if low <= number <= high:
            return name
    return None


def _label_of(row: dict, src: Source, cfg: DataConfig) -> tuple[str | None, str | None]:
    """(label, None) or (None, reason)."""
    if src.label_value is not None:
        return src.label_value, None
    raw = row.get(src.label)
    if raw is None or str(raw).strip() == "":
        return None, "missing_label"
    raw = str(raw).strip()
    if cfg.label_bins:
        try:
            label = label_from_bins(raw, cfg.label_bins)
        except ValueError:
            return None, "label_not_numeric"
        return (label, None) if label is not None else (None, "label_outside_bins")
    if cfg.labels is not None and raw not in cfg.labels:
        return None, "label_not_in_set"
    return raw, None


FIXES = {
    "missing_text": "fill the field, or point data.sources[].text at the field that holds the text",
    "missing_label": "fill the field, or point data.sources[].label at the field with the label",
    "label_not_in_set": "correct the record, or add the label to data.labels",
    "label_not_numeric": "give a number, or remove data.label_bins",
    "label_outside_bins": "correct the value, or widen data.label_bins",
}


def ingest_source(
    index: int,
    src: Source,
    res: ResolvedSource,
    cfg: DataConfig,
    seed: int,
    tally: StepTally,
    quarantine: Quarantine,
) -> Iterator[dict]:
    name = res.display
    kept: list[dict] = []
    for row in read_rows(res, src.encoding):
        tally.n_in += 1
        where = {"source": name, "line": row.line}
        if row.fields is None:
            reason, _, detail = row.error.partition(": ")
            _bad(cfg, quarantine, tally, reason, None, where, detail=detail)
            continue
        text_field = "text" if res.format == "lines" else src.text
        text = row.fields.get(text_field)
        if text is None or not str(text).strip():
            _bad(
                cfg,
                quarantine,
                tally,
                "missing_text",
                row.fields,
                where,
                field=text_field,
                value=text,
            )
            continue
        label, reason = _label_of(row.fields, src, cfg)
        if reason:
            _bad(
                cfg,
                quarantine,
                tally,
                reason,
                row.fields,
                where,
                field=src.label,
                value=row.fields.get(src.label),
            )
            continue
        kept.append({"id": f"s{index}:{row.line}", "text": str(text), "label": label, **where})
    if src.sample is not None and src.sample < len(kept):
        chosen = set(random.Random(seed + index).sample(range(len(kept)), src.sample))
        for i, rec in enumerate(kept):
            if i not in chosen:
                quarantine.put(tally, "sampled_out", None, source=rec["source"], line=rec["line"])
        kept = [rec for i, rec in enumerate(kept) if i in chosen]
    tally.n_out += len(kept)
    yield from kept


def _bad(cfg, quarantine, tally, reason, record, where, field=None, value=None, detail=None):
    if cfg.on_bad_record == "error":
        what = f"field '{field}': {value!r}: " if field else ""
        fix = FIXES.get(reason, "correct or remove the record")
        raise DataError(
            f"{where['source']}:{where['line']}: {what}{reason.replace('_', ' ')}"
            f"{' (' + detail + ')' if detail else ''}. Fix: {fix}; or set "
            "data.on_bad_record: quarantine to set such records aside and go on."
        )
    quarantine.put(tally, reason, record, **where, field=field, value=value, detail=detail)


def ingest(cfg: DataConfig, base_dir: Path, seed: int, quarantine: Quarantine):
    """All records of all sources, plus the step tally and each source's provenance."""
    tally = StepTally("ingest")
    records: list[dict] = []
    provenance = []
    for i, src in enumerate(cfg.sources):
        res = resolve(src.path, src.format, base_dir)
        before = tally.n_in
        records.extend(ingest_source(i, src, res, cfg, seed, tally, quarantine))
        provenance.append({"path": src.path, **res.provenance(), "rows": tally.n_in - before})
    return records, tally, provenance
