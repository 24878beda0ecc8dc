"""Read every configured source into records (D1):
{id, text, label, source, line, meta, [spans], [annotations], [item], [group]}."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from verticalize.config import DataConfig, Source
from verticalize.data.conversations import (
    ConversationError,
    conversation_text,
    from_row,
    from_templates,
)
from verticalize.data.encodings import Encoding
from verticalize.data.manifest import Quarantine, StepTally
from verticalize.data.readers import read_rows
from verticalize.errors import DataError
from verticalize.plugins import get_task
from verticalize.source_paths import ResolvedSource, resolve


def label_from_bins(value: str, bins: dict[str, tuple[float, float]]) -> str | None:
    """Map a numeric value to the class whose inclusive [low, high] range holds it."""
    number = float(value)
    for name, (low, high) in bins.items():
        if low <= number <= high:
            return name
    return None


def _label_of(
    row: dict, src: Source, cfg: DataConfig, section=None
) -> tuple[str | None, str | None]:
    """(label, None) or (None, reason): one label per record (the task's section unused)."""
    if src.label_value is not None:
        return src.label_value, None
    raw = row.get(src.label)
    if isinstance(raw, list):  # an annotation tool's choices
        if len(raw) > 1:
            return None, "multi_label"
        raw = raw[0] if raw else None
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
    "multi_label": "give one label per record, or set task: multilabel",
    "label_not_numeric": "give a number, or remove data.label_bins",
    "label_outside_bins": "correct the value, or widen data.label_bins",
    "bad_span": "give spans as [[start, end, TAG], …] with 0 <= start < end <= len(text)",
    "bad_encoding": "re-save the file as UTF-8, or set data.sources[].encoding",
    "bad_conversation": "correct the record, or set data.sources[].chat to the layout it uses",
    "bad_conll_line": "give one token and its tag a line (tag in the last column) and only "
    "blank lines between sentences",
    "bad_tag": "write tags as O or B-/I-/E-/S-/M-TYPE",
    "tag_not_in_scheme": "set data.sources[].tag_scheme to the scheme the file uses, or to auto",
}


RESERVED = ("spans", "annotations")


def ingest_source(
    index: int,
    src: Source,
    res: ResolvedSource,
    cfg: DataConfig,
    seed: int,
    tally: StepTally,
    quarantine: Quarantine,
    task: str = "classification",
    section=None,
    encodings: list | None = None,
) -> Iterator[dict]:
    """Records of one source in file order (a `sample` holds the source's records in memory);
    `section` is the task's own YAML section, for its parse_label; `encodings` gets how each
    file was decoded (data.encodings.Encoding)."""
    records = _records(index, src, res, cfg, tally, quarantine, task, section, encodings)
    if src.sample is None:
        for rec in records:
            tally.n_out += 1
            yield rec
        return
    kept = list(records)
    if src.sample < len(kept):
        chosen = set(random.Random(seed + index).sample(range(len(kept)), src.sample))
        for i, rec in enumerate(kept):
            if i not in chosen:
                quarantine.put(tally, "sampled_out", None, source=rec["source"], line=rec["line"])
        kept = [rec for i, rec in enumerate(kept) if i in chosen]
    tally.n_out += len(kept)
    yield from kept


def _records(index, src, res, cfg, tally, quarantine, task, section, encodings) -> Iterator[dict]:
    plugin = get_task(task)
    parse = plugin.parse_label or _label_of
    label_of = partial(parse, section=section)
    previous, repeat = None, 0
    for row in read_rows(res, src, encodings):
        tally.n_in += 1
        where = {"source": row.source or res.display, "line": row.line}
        if row.fields is None:
            reason, _, detail = row.error.partition(": ")
            _bad(cfg, quarantine, tally, reason, None, where, detail=detail)
            continue
        fields = row.fields
        rid = f"s{index}:{row.source or row.line}"
        repeat = repeat + 1 if rid == previous else 0
        previous = rid
        if repeat:  # several records on one line (a one-line JSON array export)
            rid = f"{rid}.{repeat}"
        if src.chat or src.templates or src.pretrain:
            made = list(_generation_records(rid, src, res, fields, where, cfg, tally, quarantine))
            if src.pretrain and plugin.masked_lm:  # an encoder task's text carries no label
                made = [{**rec, "label": None} for rec in made]
            tally.added += max(len(made) - 1, 0)  # templates make several records of one row
            yield from made
            continue
        text = _text_of(src, res, fields, where, cfg, tally, quarantine)
        if text is None:
            continue
        text_field = "text" if res.format in ("lines", "txt_folder", "conll") else src.text
        rec = {"id": rid, "text": text}
        spans, reason = _spans(fields.get(src.spans or "spans"), len(text))
        if reason:
            field = src.spans or "spans"
            reason, _, detail = reason.partition(": ")
            value = fields.get(field)
            _bad(cfg, quarantine, tally, reason, fields, where, field, value, detail)
            continue
        annotations = fields.get("annotations")
        if src.item and src.annotator:  # one row per (item, annotator): grouped later
            rec["item"] = str(fields.get(src.item))
            annotations = [{"annotator": str(fields.get(src.annotator)), "label": None}]
        if annotations and not src.item:
            reason = _read_picks(annotations, label_of, src, cfg)
        # a task that reads its labels itself may read them from the spans: then the spans
        # are no target of the record (the split stratifies on the label, not on them)
        spans_are_target = plugin.parse_label is None or plugin.target == "spans"
        if spans is not None and not spans_are_target:
            spans = None
        if reason:
            label = None
        elif spans is not None or annotations or plugin.target == "spans":  # spans, not a label
            label, reason = (src.label_value, None) if src.label_value else (None, None)
            if fields.get(src.label) not in (None, ""):
                label, reason = label_of(fields, src, cfg)
        else:
            label, reason = label_of(fields, src, cfg)
        if reason:
            value = fields.get(src.label)
            _bad(cfg, quarantine, tally, reason, fields, where, field=src.label, value=value)
            continue
        if annotations and src.item:
            annotations[0]["label"] = label
            label = None
        rec |= {"label": label, **where, "meta": _meta(fields, src, text_field)}
        if spans is not None:
            rec["spans"] = spans
        if annotations:
            rec["annotations"] = annotations
        if src.group and fields.get(src.group) not in (None, ""):
            rec["group"] = f"{src.group}={fields[src.group]}"
        yield rec


def _read_picks(annotations: list, label_of, src: Source, cfg: DataConfig) -> str | None:
    """Each annotator's multi-choice pick (a list) read as a row's label is; the first
    reason a pick is bad, or None."""
    for a in annotations:
        if isinstance(a.get("label"), list):
            a["label"], reason = label_of({src.label: a["label"]}, src, cfg)
            if reason:
                return reason
    return None


def _text_of(src, res, fields, where, cfg, tally, quarantine) -> str | None:
    """The row's text, or None once the row is quarantined as missing_text."""
    text_field = "text" if res.format in ("lines", "txt_folder", "conll") else src.text
    text = fields.get(text_field)
    if text is None or not str(text).strip():
        _bad(cfg, quarantine, tally, "missing_text", fields, where, field=text_field, value=text)
        return None
    return str(text)


def _generation_records(rid, src, res, fields, where, cfg, tally, quarantine):
    """Records of one row for the generation task: a pre-training text, one conversation,
    or one conversation per template (kept in one split through a shared group)."""
    if src.pretrain:
        text = _text_of(src, res, fields, where, cfg, tally, quarantine)
        if text is not None:
            yield {"id": rid, "text": text, "label": "text", **where, "meta": {}}
        return
    try:
        if src.templates:
            built = from_templates(fields, src.templates)
        else:
            built = [(src.label_value or "chat", from_row(fields, src.chat))]
    except ConversationError as e:
        field = "templates" if src.templates else src.chat
        _bad(cfg, quarantine, tally, "bad_conversation", fields, where, field=field, detail=str(e))
        return
    meta = {k: _jsonable(v) for k, v in fields.items() if not isinstance(v, list | dict)}
    if src.fields is not None:
        meta = {k: v for k, v in meta.items() if k in src.fields}
    for name, messages in built:
        rec = {
            "id": rid if len(built) == 1 else f"{rid}:{name}",
            "text": conversation_text(messages),
            "messages": messages,
            "label": name,
            **where,
            "meta": meta,
        }
        group = fields.get(src.group) if src.group else None
        if group not in (None, ""):
            rec["group"] = f"{src.group}={group}"
        elif len(built) > 1:  # questions about one row must not straddle train and test
            rec["group"] = f"row={rid}"
        yield rec


def _spans(value, n_chars: int) -> tuple[list | None, str | None]:
    """[[start, end, TAG], …] checked against the text, or (None, "bad_span: <why>")."""
    if value is None:
        return None, None
    if not isinstance(value, list):
        return None, f"bad_span: expected a list of spans, got {type(value).__name__}"
    out = []
    for span in value:
        if (
            not isinstance(span, list | tuple)
            or len(span) < 3
            or not all(isinstance(x, int) for x in span[:2])
        ):
            return None, f"bad_span: {span!r} is not [start, end, TAG]"
        if not 0 <= span[0] < span[1] <= n_chars:
            return None, f"bad_span: {span!r} does not fit the text of {n_chars} characters"
        out.append([span[0], span[1], str(span[2])])
    return sorted(out), None


def _meta(fields: dict, src: Source, text_field: str) -> dict:
    skip = {text_field, src.label, src.spans or "spans", *RESERVED}
    keys = src.fields if src.fields is not None else [k for k in fields if k not in skip]
    return {k: _jsonable(fields.get(k)) for k in keys if k in fields and k not in skip}


def _jsonable(value):
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _bad(cfg, quarantine, tally, reason, record, where, field=None, value=None, detail=None):
    if cfg.on_bad_record == "error":
        if quarantine.scrub is not None and isinstance(value, str):  # no PII in the message
            value = quarantine.scrub({"v": value})["v"]
        raise bad_record_error(where, reason, field, value, detail, FIXES.get(reason))
    quarantine.put(tally, reason, record, **where, field=field, value=value, detail=detail)


def bad_record_error(where: dict, reason: str, field, value, detail, fix: str | None) -> DataError:
    """The error `on_bad_record: error` stops with: file:line, field, value, rule and fix."""
    if isinstance(value, str) and len(value) > 120:
        value = value[:120] + "…"
    what = f"field '{field}': {value!r}: " if field else ""
    return DataError(
        f"{where['source']}:{where['line']}: {what}{reason.replace('_', ' ')}"
        f"{' (' + detail + ')' if detail else ''}. Fix: {fix or 'correct or remove the record'}; "
        "or set data.on_bad_record: quarantine to set such records aside and go on."
    )


def ingest(cfg: DataConfig, base_dir: Path, seed: int, quarantine: Quarantine):
    """All records of all sources, plus the step tally and each source's provenance."""
    tally = StepTally("ingest")
    provenance: list[dict] = []
    records = iter_sources(cfg, base_dir, seed, tally, quarantine, provenance)
    return list(records), tally, provenance


def iter_sources(
    cfg: DataConfig,
    base_dir: Path,
    seed: int,
    tally: StepTally,
    quarantine: Quarantine,
    provenance: list[dict],
    task: str = "classification",
    section=None,
) -> Iterator[dict]:
    """Stream the records of every source; `provenance` gets one entry per finished source."""
    for i, src in enumerate(cfg.sources):
        res = resolve(src.path, src.format, base_dir)
        before = tally.n_in
        encodings: list[Encoding] = []
        yield from ingest_source(
            i, src, res, cfg, seed, tally, quarantine, task, section, encodings
        )
        rows = tally.n_in - before
        entry = {"path": src.path, **res.provenance(), "rows": rows, "empty": rows == 0}
        if encodings:
            entry["encoding"] = encoding_summary(src.encoding, encodings)
        provenance.append(entry)


def encoding_summary(declared: str, encodings: list[Encoding]) -> dict:
    """How a source was decoded, for the manifest: the codec, whether it was detected (and
    how confidently), whether a BOM was dropped; a folder source counts its files per codec."""
    out: dict = {"declared": declared}
    if len(encodings) == 1:
        return out | encodings[0].as_dict()
    confidences = [e.confidence for e in encodings if e.confidence is not None]
    return out | {
        "encoding": dict(Counter(e.name for e in encodings)),
        "confidence": min(confidences) if confidences else None,
        "bom": sum(e.bom for e in encodings),
    }
