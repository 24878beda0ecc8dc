"""Per-label decision thresholds saved beside the model (THRESHOLDS_FILE), so `predict`,
the service and evaluation turn probabilities into label sets the same way."""

from __future__ import annotations

import json
from pathlib import Path

from verticalize.runfolder import write_json_atomic
from verticalize.tasks.multilabel.metrics import MIN_POSITIVES

THRESHOLDS_FILE = "thresholds.json"


def save_thresholds(folder: Path, labels: list[str], thresholds, tuned: bool) -> dict:
    """{label: threshold} written to folder/THRESHOLDS_FILE; returns what was written."""
    data = {
        "thresholds": {lab: round(float(t), 4) for lab, t in zip(labels, thresholds, strict=True)},
        "tuned_on": "validation" if tuned else None,
    }
    write_json_atomic(folder / THRESHOLDS_FILE, data)
    return data


def read_thresholds(folder: Path, labels: list[str], default: float = 0.5) -> list[float]:
    """The saved threshold of each label (`default` for a folder without THRESHOLDS_FILE,
    e.g. a multi-label model trained elsewhere)."""
    saved = _saved(folder).get("thresholds") or {}
    return [float(saved.get(lab, default)) for lab in labels]


def thresholds_note(folder: Path) -> str:
    """How the folder's thresholds were chosen, for the report."""
    saved = _saved(folder)
    if not saved:
        return f"none saved ({THRESHOLDS_FILE} missing): 0.5 for every label"
    if saved.get("tuned_on"):
        return (
            f"tuned per label on the {saved['tuned_on']} split (the best F1 on a 0.05 grid); "
            f"a label with fewer than {MIN_POSITIVES} examples there keeps multilabel.threshold"
        )
    return "multilabel.threshold for every label (multilabel.tune_thresholds is false)"


def _saved(folder: Path) -> dict:
    path = folder / THRESHOLDS_FILE
    return json.loads(path.read_text("utf-8")) if path.is_file() else {}
