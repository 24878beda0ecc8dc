"""The Data tab: what the data stage did to the records, read from the run folder's data/
(manifest.json, quarantine.jsonl, dedup_clusters.jsonl): records in / out / dropped per
step, the quarantined records filtered by rule and field, the duplicate clusters, the label
counts before and after, and the PII detections by kind."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from verticalize.web.pages import project, render
from verticalize.web.projects import config_error, run_dir

router = APIRouter()

PER_PAGE = 50  # quarantined records a page
CLUSTERS_PER_PAGE = 50
TEXT_CHARS = 300  # of a record's text shown in a table cell
NO_FIELD = "(none)"  # the field filter's value for rows that name no field (e.g. sampled_out)
SPLITS = ("train", "validation", "test")


@dataclass
class QuarantineScan:
    """One pass over quarantine.jsonl: the page of rows that match the filter, the distinct
    rules and fields (for the filter's choices), the labels of the records set aside after
    ingest (the 'before' counts need them) and the texts of the records asked for by id."""

    rows: list[dict] = field(default_factory=list)
    total: int = 0
    matched: int = 0
    page: int = 1
    rules: Counter = field(default_factory=Counter)
    fields: Counter = field(default_factory=Counter)
    set_aside: Counter = field(default_factory=Counter)
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def start(self) -> int:
        """Rows before this page."""
        return (self.page - 1) * PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, -(-self.matched // PER_PAGE))


def page_number(name: str, raw: str) -> int:
    """A 1-based page number from the query string; 422 naming the parameter otherwise."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise HTTPException(422, f"{name}={raw!r} is not a page number. Fix: use 1 or more.")
    return value


def record_text(record: dict | None) -> str:
    """The text a person reads for a record: its text, a chat's last message, or its JSON."""
    if not isinstance(record, dict):
        return ""
    text = record.get("text")
    if not isinstance(text, str):
        messages = record.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            text = str(messages[-1].get("content", ""))
        else:
            text = json.dumps(record, ensure_ascii=False, default=str)
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"


def record_labels(record: dict | None) -> list[str]:
    """What the label counts count for a record: its label, or its entity types (NER)."""
    if not isinstance(record, dict):
        return []
    spans = record.get("spans")
    if isinstance(spans, list):
        return [str(s[2]) for s in spans if isinstance(s, list | tuple) and len(s) > 2]
    label = record.get("label")
    return [str(label) if label not in (None, "") else "(no label)"]


def _shown(value) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"


def scan_quarantine(path: Path, rule: str, field_: str, page: int, ids: set[str]) -> QuarantineScan:
    """Read quarantine.jsonl once; `field_` == NO_FIELD selects rows that name no field.
    A page past the last shows the last one."""
    scan = QuarantineScan(page=page)
    if not path.is_file():
        return scan
    first = (page - 1) * PER_PAGE
    last_chunk: list[dict] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict):
                continue
            scan.total += 1
            row_rule = str(row.get("rule") or row.get("reason") or "")
            row_field = str(row["field"]) if row.get("field") is not None else NO_FIELD
            scan.rules[row_rule] += 1
            scan.fields[row_field] += 1
            record = row.get("record")
            if row.get("step") != "ingest":  # ingest's rejects never entered the pipeline
                scan.set_aside.update(record_labels(record))
            if ids and isinstance(record, dict) and str(record.get("id")) in ids:
                scan.texts.setdefault(str(record["id"]), record_text(record))
            if (rule and row_rule != rule) or (field_ and row_field != field_):
                continue
            if scan.matched % PER_PAGE == 0:
                last_chunk = []
            scan.matched += 1
            last_chunk.append((number, row, row_rule, record))
            if first < scan.matched <= first + PER_PAGE:
                scan.rows.append(_quarantine_row(number, row, row_rule, record))
    if scan.matched and first >= scan.matched:
        scan.rows = [_quarantine_row(*x) for x in last_chunk]
        scan.page = scan.pages
    return scan


def _quarantine_row(number: int, row: dict, rule: str, record) -> dict:
    source = row.get("source")
    where = f"{Path(str(source)).name}:{row.get('line')}" if source else ""
    return {
        "n": number,
        "step": row.get("step", ""),
        "reason": row.get("reason", ""),
        "rule": rule,
        "field": row.get("field") or "",
        "value": _shown(row.get("value")),
        "detail": row.get("detail") or "",
        "where": where,
        "source": str(source or ""),
        "text": record_text(record),
        "id": record.get("id", "") if isinstance(record, dict) else "",
    }


def read_clusters(path: Path) -> list[dict]:
    """dedup_clusters.jsonl rows: {kind, kept, dropped, grouped?, why}."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def split_texts(data_dir: Path, ids: set[str]) -> dict[str, str]:
    """The texts of the kept records `ids` from the split files (encrypted splits: none)."""
    found: dict[str, str] = {}
    for split in SPLITS:
        path = data_dir / f"{split}.jsonl"
        if len(found) == len(ids) or not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and str(rec.get("id")) in ids:
                    found.setdefault(str(rec["id"]), record_text(rec))
    return found


def label_rows(manifest: dict, set_aside: Counter) -> list[dict]:
    """Per label: the count as ingested (written + set aside after ingest) and as written to
    the splits (augmented copies not counted), each with a bar width in rem."""
    per_split = manifest.get("label_counts") or {}
    after: Counter = Counter()
    for counts in per_split.values():
        after.update({str(k): v for k, v in (counts or {}).items()})
    before = after + set_aside
    order = [str(x) for x in manifest.get("labels") or []]
    order += sorted(set(before) - set(order))
    top = max([*before.values(), *after.values(), 1])
    total_b, total_a = sum(before.values()) or 1, sum(after.values()) or 1
    return [
        {
            "label": label,
            "before": before[label],
            "after": after[label],
            "before_share": f"{before[label] / total_b:.1%}",
            "after_share": f"{after[label] / total_a:.1%}",
            "before_w": round(8 * before[label] / top, 2),
            "after_w": round(8 * after[label] / top, 2),
            "splits": [(per_split.get(s) or {}).get(label, 0) for s in SPLITS],
        }
        for label in order
        if before[label] or after[label]
    ]


def step_rows(manifest: dict) -> list[dict]:
    rows = []
    for s in manifest.get("steps") or []:
        dropped = s.get("dropped") or {}
        rows.append(
            {
                "step": s.get("step", ""),
                "in": s.get("in", 0),
                "out": s.get("out", 0),
                "added": s.get("added") or "",
                "dropped": sum(v for v in dropped.values() if isinstance(v, int)),
                "reasons": ", ".join(f"{k} = {v}" for k, v in dropped.items()),
            }
        )
    return rows


def _read_manifest(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _link(base: str, **params) -> str:
    kept = {k: v for k, v in params.items() if v not in ("", None, 1)}
    return f"{base}?{urlencode(kept)}" if kept else base


@router.get("/data/{key:path}", response_class=HTMLResponse)
def data_page(
    request: Request, key: str, rule: str = "", field: str = "", page: str = "1", cpage: str = "1"
):
    p = project(request, key)
    base = {"project": p, "active_tab": "data"}
    folder = run_dir(p)
    if folder is None:
        problem = config_error(p.config_path) or "the configuration does not load"
        return render(request, "data.html.j2", missing=f"No data to show: {problem}", **base)
    data_dir = folder / "data"
    manifest = _read_manifest(data_dir / "manifest.json")
    if manifest is None or not manifest.get("complete"):
        state = "has not finished" if manifest else "has not run yet"
        message = (
            f"The data stage {state} for this project, so there is nothing to show. Start it "
            f"from the Run tab (Data), or run `verticalize data {p.config_path.name}` in "
            f"{p.folder}."
        )
        return render(request, "data.html.j2", missing=message, **base)
    page_n, cpage_n = page_number("page", page), page_number("cpage", cpage)
    clusters = read_clusters(data_dir / "dedup_clusters.jsonl")
    shown = clusters[(cpage_n - 1) * CLUSTERS_PER_PAGE :][:CLUSTERS_PER_PAGE]
    ids = {
        str(i)
        for c in shown
        for i in [c.get("kept"), *c.get("dropped", []), *c.get("grouped", [])]
        if i
    }
    encrypted = (data_dir / "quarantine.jsonl.enc").is_file()
    scan = scan_quarantine(data_dir / "quarantine.jsonl", rule, field, page_n, ids)
    texts = {**split_texts(data_dir, ids - set(scan.texts)), **scan.texts}
    here = f"/data/{p.key}"
    return render(
        request,
        "data.html.j2",
        manifest=manifest,
        steps=step_rows(manifest),
        labels=label_rows(manifest, scan.set_aside),
        splits=SPLITS,
        pii=manifest.get("pii"),
        quarantine=scan,
        quarantine_encrypted=encrypted,
        rule=rule,
        field=field,
        no_field=NO_FIELD,
        prev_url=_link(here, rule=rule, field=field, page=scan.page - 1) + "#quarantine-h",
        next_url=_link(here, rule=rule, field=field, page=scan.page + 1) + "#quarantine-h",
        clusters=shown,
        texts=texts,
        cluster_count=len(clusters),
        cluster_page=cpage_n,
        cluster_pages=max(1, -(-len(clusters) // CLUSTERS_PER_PAGE)),
        cluster_url=lambda n: _link(here, rule=rule, field=field, page=scan.page, cpage=n),
        dedup=manifest.get("dedup") or {},
        **base,
    )
