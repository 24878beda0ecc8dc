"""The experts' decisions as a Label Studio JSON export (<project>/review/labelstudio.json,
read back by verticalize's `format: labelstudio` source), and that source added to the
project's verticalize.yaml without touching the rest of its text (comments included)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from verticalize.web.projects import Project, config_error
from verticalize.web.review_queue import REVIEW_DIR

EXPORT = "labelstudio.json"
YAML_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


class ExportError(ValueError):
    """The export or the YAML edit was refused; the message says why and what to do."""


def export_path(project: Project) -> Path:
    return project.folder / REVIEW_DIR / EXPORT


def exported_count(project: Project) -> int | None:
    """Tasks in the current export, or None when there is none (or it does not parse)."""
    try:
        tasks = json.loads(export_path(project).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return len(tasks) if isinstance(tasks, list) else None


def write_export(project: Project, decisions: dict[str, dict]) -> Path:
    """Every latest decision as one Label Studio task with one annotation."""
    if not decisions:
        raise ExportError(
            "nothing to export: no decision yet. Fix: decide at least one item of the queue"
        )
    reviewers = {
        name: i for i, name in enumerate(sorted({d["reviewer"] for d in decisions.values()}), 1)
    }
    tasks = [
        labelstudio_task(n, d, reviewers[d["reviewer"]])
        for n, d in enumerate(decisions.values(), 1)
    ]
    path = export_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(partial, path)
    return path


def labelstudio_task(n: int, decision: dict, user_id: int) -> dict:
    """A task as Label Studio's JSON export writes it; data.* other than text become the
    record's metadata on load."""
    answer = _results(decision, decision.get("label"), decision.get("spans"))
    model = _results(decision, decision["predicted"], decision["predicted"])
    when = decision["time"]
    return {
        "id": n,
        "data": {
            "text": decision["text"],
            "record_id": decision["id"],
            "reviewer": decision["reviewer"],
            "reviewed_at": when,
        },
        "annotations": [
            {
                "id": n,
                "completed_by": user_id,
                "created_username": decision["reviewer"],
                "created_at": when,
                "updated_at": when,
                "was_cancelled": False,
                "ground_truth": True,
                "result": answer,
            }
        ],
        "predictions": [
            {
                "model_version": decision.get("run") or "verticalize",
                "score": decision.get("score"),
                "result": model,
            }
        ],
    }


def _results(decision: dict, label, spans) -> list[dict]:
    base = {"from_name": "label", "to_name": "text"}
    if decision["kind"] != "spans":
        return [{**base, "type": "choices", "value": {"choices": [label]}}]
    text = decision["text"]
    return [
        {
            **base,
            "type": "labels",
            "value": {"start": s, "end": e, "text": text[s:e], "labels": [t]},
        }
        for s, e, t in spans
    ]


def source_lines(indent: str) -> list[str]:
    lines = [
        f"{indent}- path: {REVIEW_DIR}/{EXPORT}  # the console's Review tab: the experts' decisions",
        f"{indent}  format: labelstudio",
    ]
    return lines + [f"{indent}  reviewed: true"]  # its copy of a text wins over the others'


def add_review_source(project: Project) -> bool:
    """Add the export to data.sources in verticalize.yaml unless it is there (True when
    added). The edit is textual (comments stay) and kept only if the file still validates."""
    path = project.config_path
    with open(path, encoding="utf-8", newline="") as fh:  # CRLF files stay CRLF
        text = fh.read()
    try:
        raw = yaml.safe_load(text) or {}
        node = _sources_node(yaml.compose(text))
    except yaml.YAMLError as e:
        raise ExportError(f"{path.name} does not parse as YAML: {e}") from None
    target = export_path(project).resolve()
    for src in (raw.get("data") or {}).get("sources") or []:
        if (
            isinstance(src, dict)
            and (project.folder / str(src.get("path", ""))).resolve() == target
        ):
            return False
    if node is None:
        raise ExportError(
            f"{path.name} has no data.sources list to add the export to. Fix: add the source "
            f"by hand:\n" + "\n".join(source_lines("    "))
        )
    edited = _append_flow(text, node) if node.flow_style is True else _append_block(text, node)
    candidate = path.with_name(".verticalize.yaml.review-check")
    with open(candidate, "w", encoding="utf-8", newline="") as fh:
        fh.write(edited)
    try:
        error = config_error(candidate)
        if error is not None:
            error = error.replace(str(candidate), path.name)
            raise ExportError(
                f"{path.name} would not validate with the review source added, so it is "
                f"unchanged: {error}\nFix: add the source by hand:\n"
                + "\n".join(source_lines("    "))
            )
        os.replace(candidate, path)
    finally:
        candidate.unlink(missing_ok=True)
    return True


def _sources_node(root) -> yaml.SequenceNode | None:
    data = _value(root, "data")
    node = _value(data, "sources")
    return node if isinstance(node, yaml.SequenceNode) and node.value else None


def _value(node, key: str):
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if getattr(k, "value", None) == key), None)


def _append_block(text: str, node: yaml.SequenceNode) -> str:
    """The item after the list's last item, at the column of the list's dashes."""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = YAML_BREAK.split(text)  # line numbers as the YAML parser counts them
    if lines[-1]:
        lines.append("")  # the file ends with a line break once edited
    last = node.value[-1]
    end = last.end_mark
    at = end.line + 1 if lines[end.line][: end.column].strip() else end.line
    while at - 1 > last.start_mark.line and (
        not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#")
    ):
        at -= 1  # blank lines and comments before the next key stay with it
    lines[at:at] = source_lines(" " * node.start_mark.column)  # a block list starts at a '-'
    return newline.join(lines)


def _append_flow(text: str, node: yaml.SequenceNode) -> str:
    after = node.value[-1].end_mark.index  # right after the last item
    item = f"{{path: {REVIEW_DIR}/{EXPORT}, format: labelstudio"
    item += ", reviewed: true}"
    return text[:after] + ", " + item + text[after:]
