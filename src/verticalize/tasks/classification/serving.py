"""Classification at prediction time: `Classifier` (shared by `predict` and the service)
and the serving engine (torch, or the exported INT8 ONNX model)."""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import torch

from verticalize.errors import ServeError
from verticalize.models.text_batches import chunked_outputs
from verticalize.predict import label_results
from verticalize.serve.engines import CHUNK, Engine, encoder_of
from verticalize.tasks.classification.encode import EncodedRecords, predict_proba


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
        records = [{"text": t} for t in texts]
        data = EncodedRecords(records, self.tokenizer, {}, self.tokenizer.model_max_length)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        return chunked_outputs(
            data.items,
            self.batch_size,
            lambda chunk: predict_proba(self.model, chunk, pad, len(chunk)),
            out,
        )

    def __call__(self, texts: list[str]) -> list[dict]:
        return label_results(self.probabilities(texts), self.labels)


class ClassificationEngine(Engine):
    task = "classification"
    kinds = ("classify", "embed")

    def __init__(self, folder: Path, runtime: str = "torch", version: str | None = None):
        super().__init__(folder, version)
        self.runtime = runtime
        self._encoder: torch.nn.Module | None = None
        if runtime == "onnx":
            self.onnx = _onnx_classifier(folder)
            self.labels = list(self.onnx.labels)
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder)
            self._set_tokenizer(tokenizer, _position_limit(folder))
        else:
            self.classifier = Classifier(folder, batch_size=CHUNK)
            self.labels = self.classifier.labels
            config = self.classifier.model.config
            limit = getattr(config, "max_position_embeddings", None)
            self._set_tokenizer(self.classifier.tokenizer, limit)

    def _run_classify(self, key: Hashable, texts: list[str]) -> list[dict]:
        if self.runtime == "onnx":
            return label_results(self.onnx.predict_proba(texts), self.labels)
        return self.classifier(texts)

    def _embed_model(self) -> torch.nn.Module:
        if self.runtime != "onnx":
            return encoder_of(self.classifier.model)
        if self._encoder is None:  # the ONNX graph ends in logits; embeddings need the encoder
            from transformers import AutoModel

            self._encoder = AutoModel.from_pretrained(self.folder).eval()
        return self._encoder


def _onnx_classifier(folder: Path):
    from verticalize.errors import VerticalizeError
    from verticalize.export.onnx import OnnxClassifier

    try:
        return OnnxClassifier(folder, quantized=True)
    except VerticalizeError as e:  # no onnx/model.int8.onnx: say how to get one
        raise ServeError(f"serve.runtime is onnx, but {e} Or set serve.runtime: torch.") from None


def _position_limit(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return config.get("max_position_embeddings")
