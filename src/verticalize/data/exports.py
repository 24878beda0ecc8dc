"""Annotation-tool exports → plain fields (D1): Label Studio JSON / JSON_MIN tasks and Doccano
JSONL lines become {<text field>, <label field>, spans, annotations, …}, or an error naming
what is missing."""

from __future__ import annotations

from verticalize.config import Source


def labelstudio_fields(task: dict, src: Source) -> tuple[dict | None, str | None]:
    """A Label Studio task (full JSON export, or a flat JSON_MIN row) as fields."""
    if "data" not in task:
        return _json_min(task, src)
    data = task.get("data")
    if not isinstance(data, dict) or src.text not in data:
        keys = sorted(data) if isinstance(data, dict) else []
        return None, f"missing_field: task has no data.{src.text} (data keys: {keys})"
    annotations = []
    spans = None
    for ann in task.get("annotations") or task.get("completions") or []:
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        results = ann.get("result")
        if not isinstance(results, list):
            return None, "missing_field: an annotation has no result list"
        label = _choice(results, src.label)
        ann_spans = _spans_of(results)
        annotations.append({"annotator": _annotator(ann.get("completed_by")), "label": label})
        if spans is None and ann_spans:
            spans = ann_spans
    fields = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}
    fields["task_id"] = task.get("id")
    labelled = [a for a in annotations if a["label"] is not None]
    if len(labelled) > 1:
        fields["annotations"] = labelled
    elif labelled:
        fields[src.label] = labelled[0]["label"]
    if spans:
        fields["spans"] = spans
    return fields, None


def _json_min(row: dict, src: Source) -> tuple[dict | None, str | None]:
    if src.text not in row:
        return None, f"missing_field: no '{src.text}' in the task (keys: {sorted(row)})"
    fields = dict(row)
    value = row.get(src.label)
    if isinstance(value, dict) and "choices" in value:
        value = value["choices"]
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):  # span labels
            fields["spans"] = [
                [v["start"], v["end"], (v.get("labels") or ["?"])[0]]
                for v in value
                if "start" in v and "end" in v
            ]
            fields.pop(src.label)
        elif len(value) == 1:
            fields[src.label] = value[0]
        else:  # several choices: a list, for the task to read (multilabel takes it)
            fields[src.label] = value
    return fields, None


def _choice(results: list, control: str) -> str | list[str] | None:
    """The choice picked, or the list of them for a multi-choice pick."""
    choices = [r for r in results if isinstance(r, dict) and r.get("type") == "choices"]
    named = [r for r in choices if r.get("from_name") == control]
    for r in named or choices:
        picked = (r.get("value") or {}).get("choices") or []
        if picked:
            return str(picked[0]) if len(picked) == 1 else [str(c) for c in picked]
    return None


def _spans_of(results: list) -> list[list]:
    spans = []
    for r in results:
        if not isinstance(r, dict) or r.get("type") not in ("labels", "hypertextlabels"):
            continue
        v = r.get("value") or {}
        if "start" in v and "end" in v and v.get("labels"):
            spans.append([v["start"], v["end"], v["labels"][0]])
    return sorted(spans)


def _annotator(who) -> str:
    # Label Studio puts the user's e-mail in completed_by when expanded: keep the id only
    if isinstance(who, dict):
        who = who.get("id", "?")
    return f"user{who}"


def doccano_fields(row: dict, src: Source) -> tuple[dict | None, str | None]:
    """Doccano classification (`label: ["pos"]`) or sequence labelling
    (`label: [[start, end, "TAG"]]`, or `entities: [{start_offset, end_offset, label}]`)."""
    fields = dict(row)
    if src.text not in row:
        return None, f"missing_field: no '{src.text}' in the line (keys: {sorted(row)})"
    value = row.get(src.label, row.get("labels"))
    if isinstance(row.get("entities"), list):
        fields["spans"] = [
            [e["start_offset"], e["end_offset"], e["label"]]
            for e in row["entities"]
            if isinstance(e, dict) and {"start_offset", "end_offset", "label"} <= e.keys()
        ]
    elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        fields["spans"] = [list(v[:3]) for v in value]
        fields.pop(src.label, None)
        fields.pop("labels", None)
        return fields, None
    if isinstance(value, list):  # several labels stay a list, for the task to read
        fields[src.label] = value if len(value) > 1 else (value[0] if value else None)
    return fields, None
