"""Multi-label classification at prediction time: `MultilabelClassifier` (shared by `predict`
and the service) and the serving engine."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import numpy as np
import torch

from verticalize.models.text_batches import chunked_outputs
from verticalize.serve.engines import CHUNK, Engine, encoder_of
from verticalize.tasks.multilabel.encode import EncodedRecords, predict_proba
from verticalize.tasks.multilabel.thresholds import read_thresholds


def label_set_results(probs: np.ndarray, labels: list[str], thresholds) -> list[dict]:
    """Per row: {"labels": those at or over their threshold (likeliest first), "probs":
    {label: p}, "label": the likeliest label, "score": its p}."""
    out = []
    for p in probs:
        order = np.argsort(-p, kind="stable")
        out.append(
            {
                "labels": [labels[j] for j in order if p[j] >= thresholds[j]],
                "probs": {lab: round(float(x), 4) for lab, x in zip(labels, p, strict=True)},
                "label": labels[int(order[0])],
                "score": round(float(p[order[0]]), 4),
            }
        )
    return out


class MultilabelClassifier:
    """A trained multi-label model/ folder: `MultilabelClassifier(folder)(["text", …])` gives
    one label_set_results dict per text, decided by the folder's saved thresholds."""

    def __init__(self, folder: Path, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.thresholds = np.array(read_thresholds(folder, self.labels), dtype=np.float32)
        self.batch_size = batch_size

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Each label's probability, [len(texts), len(labels)], in length-sorted chunks."""
        data = EncodedRecords(
            [{"text": t} for t in texts], self.tokenizer, [], self.tokenizer.model_max_length
        )
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        return chunked_outputs(
            data.items,
            self.batch_size,
            lambda chunk: predict_proba(self.model, chunk, pad, len(chunk)),
            out,
        )

    def __call__(self, texts: list[str]) -> list[dict]:
        return label_set_results(self.probabilities(texts), self.labels, self.thresholds)


class MultilabelEngine(Engine):
    task = "multilabel"
    kinds = ("classify", "embed")

    def __init__(self, folder: Path, runtime: str = "torch", version: str | None = None):
        super().__init__(folder, version)
        self.classifier = MultilabelClassifier(folder, batch_size=CHUNK)
        self.labels = self.classifier.labels
        limit = getattr(self.classifier.model.config, "max_position_embeddings", None)
        self._set_tokenizer(self.classifier.tokenizer, limit)

    def _run_classify(self, key: Hashable, texts: list[str]) -> list[dict]:
        return self.classifier(texts)

    def _embed_model(self) -> torch.nn.Module:
        return encoder_of(self.classifier.model)
