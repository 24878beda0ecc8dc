"""Predictions from a trained model/ folder (M2 output): NER spans or class labels per text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from verticalize.errors import DataError, ModelError

Predictor = Callable[[list[str]], list[dict]]


def model_task(folder: Path) -> str:
    """ner, classification or generation, from what the folder holds."""
    from verticalize.tasks.ner import SPEC_FILE

    if (folder / SPEC_FILE).is_file():
        return "ner"
    config = folder / "config.json"
    if not config.is_file():
        raise ModelError(
            f"{folder}: no config.json, so this is not a model folder. Fix: give a run's "
            "verticalize.yaml or its model/ folder (after `verticalize train`)."
        )
    archs = json.loads(config.read_text("utf-8")).get("architectures") or [""]
    return "classification" if archs[0].endswith("SequenceClassification") else "generation"


def load_predictor(folder: Path, batch_size: int = 32) -> Predictor:
    """A function from texts to one result dict per text."""
    task = model_task(folder)
    if task == "ner":
        from verticalize.tasks.ner import Tagger

        tagger = Tagger(folder, batch_size)
        return lambda texts: [{"entities": ents} for ents in tagger(texts)]
    if task == "classification":
        return _classifier(folder, batch_size)
    raise ModelError(
        f"{folder}: `predict` covers classification and ner models; this one generates text. "
        "Fix: use `verticalize eval` for its scores."
    )


def _classifier(folder: Path, batch_size: int) -> Predictor:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from verticalize.tasks.classification import predict_records

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def run(texts: list[str]) -> list[dict]:
        records = [{"text": t} for t in texts]
        n = tokenizer.model_max_length
        probs, _ = predict_records(model, tokenizer, records, labels, n, batch_size)
        return [
            {
                "label": labels[int(p.argmax())],
                "score": round(float(p.max()), 4),
                "probs": {lab: round(float(x), 4) for lab, x in zip(labels, p, strict=True)},
            }
            for p in probs
        ]

    return run


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
