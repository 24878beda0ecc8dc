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
    return Classifier(folder, batch_size)


class Classifier:
    """A trained sequence classifier (a model/ folder): `Classifier(folder)(["text", …])`
    gives, per text, {"label", "score", "probs": {label: p}}. `predict` and the HTTP
    service share this path."""

    def __init__(self, folder: Path, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.batch_size = batch_size

    def probabilities(self, texts: list[str]):
        """Class probabilities, [len(texts), len(labels)]; texts run in length-sorted chunks
        chosen by `length_chunks`, so short texts are not padded to the longest one."""
        import numpy as np
        import torch

        from verticalize.tasks.classification import EncodedRecords, predict_proba

        records = [{"text": t} for t in texts]
        data = EncodedRecords(records, self.tokenizer, {}, self.tokenizer.model_max_length)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        lengths = [len(item["input_ids"]) for item in data.items]
        with torch.inference_mode():
            for idx in length_chunks(lengths, self.batch_size):
                chunk = [data[i] for i in idx]
                out[idx] = predict_proba(self.model, chunk, self.tokenizer.pad_token_id, len(idx))
        return out

    def __call__(self, texts: list[str]) -> list[dict]:
        return label_results(self.probabilities(texts), self.labels)


def length_chunks(lengths: list[int], max_chunk: int, overhead_tokens: int = 64) -> list[list[int]]:
    """Indices grouped into forward passes of at most `max_chunk` texts, in length order,
    minimising padded tokens + `overhead_tokens` per pass (a pass costs about as much as
    that many extra tokens: ~16 ms vs ~0.27 ms per token for MiniLM on one CPU core).
    Dynamic programming over the sorted lengths: optimal for that cost, O(n * max_chunk)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j texts (sorted)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[order[j - 1]]  # the longest text of a chunk ending at j
        for i in range(max(0, j - max_chunk), j):
            cost = best[i] + overhead_tokens + (j - i) * width
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks, j = [], n
    while j > 0:
        chunks.append(order[cut[j] : j])
        j = cut[j]
    return chunks[::-1]


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
