"""Embeddings at prediction time: `Embedder` (shared by `predict` and eval) and the serving
engine behind /v1/embeddings. Texts are embedded as given: a model trained with prefixes
(config.json `sentence_embedding`, e.g. "query: " / "passage: " for e5) wants the caller to
put them in front, as with the public e5 models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from verticalize.serve.engines import CHUNK, Engine
from verticalize.tasks.embedding.model import embed_texts
from verticalize.tasks.embedding.settings import SETTINGS_KEY


class Embedder:
    """A trained encoder folder: `Embedder(folder)(["text", …])` gives, per text,
    {"embedding": [floats]}, mean-pooled and L2-normalised (cosine = dot product)."""

    def __init__(self, folder: Path, batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer

        self.model = AutoModel.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.batch_size = batch_size
        self.settings = getattr(self.model.config, SETTINGS_KEY, None) or {}

    def encode(self, texts: list[str]) -> np.ndarray:
        """[len(texts), hidden] float32; texts truncated as in training."""
        limit = self.tokenizer.model_max_length
        return embed_texts(self.model, self.tokenizer, texts, limit, self.batch_size)

    def __call__(self, texts: list[str]) -> list[dict]:
        return [{"embedding": [float(x) for x in v]} for v in self.encode(texts)]


class EmbeddingEngine(Engine):
    """/v1/embeddings only: /v1/classify and the others answer 400 (the engine's kinds)."""

    task = "embedding"
    kinds = ("embed",)

    def __init__(self, folder: Path, runtime: str = "torch", version: str | None = None):
        super().__init__(folder, version)
        self.embedder = Embedder(folder, batch_size=CHUNK)
        limit = getattr(self.embedder.model.config, "max_position_embeddings", None)
        self._set_tokenizer(self.embedder.tokenizer, limit)

    def _embed_model(self) -> torch.nn.Module:
        return self.embedder.model

    def warm_up(self) -> None:
        self.run_batch(("embed",), ["warm up"])

    def close(self) -> None:
        self.embedder = None
        super().close()
