"""Predictions from a trained model/ folder (M2 output), through its task plugin; the
batching helpers the plugins share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from verticalize.errors import DataError, ModelError
from verticalize.plugins import get_task, task_names

Predictor = Callable[[list[str]], list[dict]]


def model_task(folder: Path) -> str:
    """The task of a model folder: what export recorded, or the first task plugin that
    recognises the folder (`TaskPlugin.detect`)."""
    config = folder / "config.json"
    info = folder / "verticalize.json"
    if info.is_file():
        try:
            task = json.loads(info.read_text("utf-8")).get("task")
        except (OSError, json.JSONDecodeError, AttributeError):
            task = None
        if isinstance(task, str) and task in task_names():
            return task
    for name in task_names():
        if get_task(name).detect(folder):
            return name
    if not config.is_file():
        raise ModelError(
            f"{folder}: no config.json, so this is not a model folder. Fix: give a run's "
            "verticalize.yaml or its model/ folder (after `verticalize train`)."
        )
    raise ModelError(
        f"{folder}: no task recognises this model folder (known: {', '.join(task_names())}). "
        "Fix: give a folder written by `verticalize train` or `verticalize export`."
    )


def load_predictor(folder: Path, batch_size: int = 32) -> Predictor:
    """A function from texts to one result dict per text (the task plugin's predictor)."""
    task = model_task(folder)
    plugin = get_task(task)
    if plugin.predictor is None:
        covered = [n for n in task_names() if get_task(n).predictor is not None]
        raise ModelError(
            f"{folder}: `predict` covers {', '.join(covered)} models; this one is a {task} "
            "model. Fix: use `verticalize eval` for its scores."
        )
    return plugin.predictor(folder, batch_size)


def label_results(probs, labels: list[str]) -> list[dict]:
    """One {"label", "score", "probs"} dict per row of class probabilities."""
    return [
        {
            "label": labels[int(p.argmax())],
            "score": round(float(p.max()), 4),
            "probs": {lab: round(float(x), 4) for lab, x in zip(labels, p, strict=True)},
        }
        for p in probs
    ]


def read_texts(path: Path, field: str = "text") -> list[str]:
    """Texts from a .jsonl file (one object a line, text in `field`) or one text a line."""
    if not path.is_file():
        raise DataError(f"{path}: no such file. Fix: give a .jsonl or .txt file of texts.")
    texts = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if path.suffix != ".jsonl":
                texts.append(line.rstrip("\r\n"))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{n}: not JSON ({e.msg}). Fix: one object a line."
                ) from None
            value = obj.get(field) if isinstance(obj, dict) else None
            if not isinstance(value, str):
                raise DataError(
                    f"{path}:{n}: field '{field}' is missing or not text (got {value!r}). "
                    f'Fix: give every line a "{field}" string, or pass --field.'
                )
            texts.append(value)
    return texts
