"""The review queue of a project's run: its test predictions ordered for an expert (the
mistakes first, then the least confident correct answers), and the experts' decisions on
them in <project>/review/decisions.jsonl (append-only; the latest decision per item wins)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from verticalize.data.outputs import read_split
from verticalize.errors import VerticalizeError
from verticalize.plugins import get_task
from verticalize.web.projects import Project, load, run_dir

REVIEW_DIR = "review"
DECISIONS = "decisions.jsonl"
MISTAKES_SHOWN = 200
UNSURE_SHOWN = 50  # correct answers shown after the mistakes
MAX_REVIEWER = 80
DECISION_KEYS = {"id", "kind", "text", "recorded", "predicted", "reviewer", "time"}
_append_lock = threading.Lock()


class ReviewInputError(ValueError):
    """A decision the server refuses (HTTP 422): the message names the field, the bad value
    and the fix."""


@dataclass
class RunItems:
    """Every test prediction of the run, by record id; `problem` says why there are none."""

    kind: str | None = None  # "label" (classification) | "spans" (NER)
    labels: list[str] = field(default_factory=list)  # classes, or the entity types
    items: dict[str, dict] = field(default_factory=dict)
    run: Path | None = None
    problem: str | None = None


def slug(record_id: str) -> str:
    """A stable HTML id for a record id (ids hold ':' and other characters)."""
    return hashlib.sha1(record_id.encode("utf-8")).hexdigest()[:12]


def load_run_items(project: Project) -> RunItems:
    """The run's eval/predictions.jsonl joined with its test texts."""
    try:
        cfg = load(project.config_path)
    except VerticalizeError as e:
        return RunItems(problem=f"the configuration does not load: {e}")
    run = run_dir(project)
    predictions = run / "eval" / "predictions.jsonl"
    if not predictions.is_file():
        return RunItems(
            run=run,
            problem=f"no {predictions.relative_to(project.folder)} yet: run the pipeline "
            "(Run tab) so the model's test answers can be reviewed",
        )
    try:
        rows = [json.loads(x) for x in predictions.read_text("utf-8").splitlines() if x.strip()]
        manifest = json.loads((run / "data" / "manifest.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return RunItems(run=run, problem=f"the run's files cannot be read: {e}")
    labels = [str(x) for x in manifest.get("labels") or cfg.data.labels or []]
    target = get_task(cfg.task).target
    if target == "spans":
        items = {r["id"]: _ner_item(r) for r in rows}
        return RunItems("spans", labels, items, run)
    if target != "label" or not all(isinstance(r.get("pred"), str) for r in rows):
        return RunItems(
            run=run,
            problem=f"task {cfg.task!r}: the review queue covers single-label classification "
            "and NER",
        )
    try:
        texts = {r["id"]: r["text"] for r in read_split(cfg, run, "test")}
    except (OSError, VerticalizeError) as e:
        return RunItems(run=run, problem=f"the run's test split cannot be read: {e}")
    items = {r["id"]: _label_item(r, texts.get(r["id"], "")) for r in rows}
    return RunItems("label", labels, items, run)


def _label_item(row: dict, text: str) -> dict:
    return {
        "id": row["id"],
        "text": text,
        "recorded": row["gold"],
        "predicted": row["pred"],
        "score": row.get("confidence"),
        "mistake": row["pred"] != row["gold"],
    }


def _ner_item(row: dict) -> dict:
    return {
        "id": row["id"],
        "text": row["text"],
        "recorded": [list(s[:3]) for s in row.get("gold") or []],
        "predicted": [list(s[:3]) for s in row.get("pred") or []],
        "score": None,  # NER predictions carry no confidence
        "errors": row.get("errors", 0),
        "mistake": bool(row.get("errors")),
    }


def queue(run_items: RunItems) -> list[dict]:
    """Mistakes first (the most confident, or with NER the most wrong spans, first), then the
    correct answers the model was least sure of (NER: in file order)."""
    items = list(run_items.items.values())
    if run_items.kind == "spans":
        mistakes = sorted((i for i in items if i["mistake"]), key=lambda i: -i["errors"])
        correct = [i for i in items if not i["mistake"]]
    else:
        mistakes = sorted((i for i in items if i["mistake"]), key=lambda i: -(i["score"] or 0))
        correct = sorted((i for i in items if not i["mistake"]), key=lambda i: i["score"] or 0)
    return mistakes[:MISTAKES_SHOWN] + correct[:UNSURE_SHOWN]


def decisions_file(project: Project) -> Path:
    return project.folder / REVIEW_DIR / DECISIONS


def read_decisions(project: Project) -> dict[str, dict]:
    """The latest decision per record id (a line that is not a decision is skipped)."""
    latest: dict[str, dict] = {}
    try:
        lines = decisions_file(project).read_text("utf-8").splitlines()
    except FileNotFoundError:
        return latest
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and DECISION_KEYS <= row.keys() and isinstance(row["id"], str):
            latest[row["id"]] = row
    return latest


def check_reviewer(value: str | None) -> str:
    name = (value or "").strip()
    if not name:
        raise ReviewInputError(
            "reviewer: empty. Fix: type your name in the Reviewer field; every decision "
            "records who took it"
        )
    if len(name) > MAX_REVIEWER or any(ord(c) < 32 for c in name):
        raise ReviewInputError(
            f"reviewer: {name[:MAX_REVIEWER]!r}… is not a name (over {MAX_REVIEWER} "
            "characters or control characters). Fix: type a short name"
        )
    return name


def check_label(value: str | None, labels: list[str]) -> str:
    if value not in labels:
        raise ReviewInputError(
            f"label: {value!r} is not in the label set ({', '.join(labels)}). "
            "Fix: pick one of these labels"
        )
    return value


def check_spans(value: str | list, text: str, types: list[str]) -> list[list]:
    """[[start, end, TYPE], …] sorted: character offsets in range, no overlap, known types.
    `value` is the list or its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ReviewInputError(
                f"spans: {value[:80]!r} is not JSON. Fix: send [[start, end, TYPE], …]"
            ) from None
    if not isinstance(value, list):
        raise ReviewInputError(f"spans: {value!r} is not a list. Fix: send [[start, end, TYPE], …]")
    spans = []
    for span in value:
        if not (
            isinstance(span, list)
            and len(span) == 3
            and all(isinstance(x, int) and not isinstance(x, bool) for x in span[:2])
        ):
            raise ReviewInputError(f"spans: {span!r} is not [start, end, TYPE]. Fix: send that")
        start, end, kind = span
        if not 0 <= start < end <= len(text):
            raise ReviewInputError(
                f"spans: {span!r} does not fit the text of {len(text)} characters. "
                "Fix: offsets must satisfy 0 <= start < end <= the text's length"
            )
        if kind not in types:
            raise ReviewInputError(
                f"spans: type {kind!r} of {span!r} is not an entity type of this project "
                f"({', '.join(types)}). Fix: pick one of these types"
            )
        spans.append([start, end, kind])
    spans.sort()
    for a, b in zip(spans, spans[1:], strict=False):
        if b[0] < a[1]:
            raise ReviewInputError(
                f"spans: {a!r} and {b!r} overlap ({text[b[0] : a[1]]!r}). "
                "Fix: remove one of them; entities do not nest"
            )
    return spans


def record_decision(project: Project, run_items: RunItems, form: dict) -> dict:
    """Check a decision (form fields item, reviewer, and label or spans) and append it with
    the reviewer and the UTC time; returns the decision."""
    item = run_items.items.get(form.get("item") or "")
    if item is None:
        raise ReviewInputError(
            f"item: {form.get('item')!r} is not a test record of this run. "
            "Fix: reload the Review page (a new run changes the queue)"
        )
    reviewer = check_reviewer(form.get("reviewer"))
    if run_items.kind == "spans":
        answer = {"spans": check_spans(form.get("spans") or "", item["text"], run_items.labels)}
    else:
        answer = {"label": check_label(form.get("label"), run_items.labels)}
    decision = {
        "id": item["id"],
        "kind": run_items.kind,
        **answer,
        "text": item["text"],
        "recorded": item["recorded"],
        "predicted": item["predicted"],
        "score": item["score"],
        "reviewer": reviewer,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": run_items.run.name if run_items.run else None,
    }
    path = decisions_file(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _append_lock, open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(decision, ensure_ascii=False) + "\n")
    return decision


def segments(text: str, spans: list) -> list[tuple[str, str | None]]:
    """The text cut at the spans: (chunk, TYPE or None); an overlapping span is skipped."""
    out, at = [], 0
    for start, end, kind in sorted(s[:3] for s in spans):
        if start < at or end > len(text):
            continue
        if start > at:
            out.append((text[at:start], None))
        out.append((text[start:end], kind))
        at = end
    if at < len(text):
        out.append((text[at:], None))
    return out
