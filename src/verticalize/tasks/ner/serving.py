"""NER at serving time: the engine over `Tagger`."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import torch

from verticalize.serve.engines import CHUNK, Engine
from verticalize.tasks.ner.model import Tagger


class NerEngine(Engine):
    task = "ner"
    kinds = ("ner", "embed")

    def __init__(self, folder: Path, runtime: str = "torch", version: str | None = None):
        super().__init__(folder, version)
        self.tagger = Tagger(folder, batch_size=CHUNK)
        self.labels = sorted({t.split("-", 1)[-1] for t in self.tagger.tags if t != "O"})
        limit = getattr(self.tagger.model.backbone.config, "max_position_embeddings", None)
        self._set_tokenizer(self.tagger.tokenizer, limit)
        self.max_tokens = min(self.max_tokens, int(self.tagger.max_length))

    @torch.inference_mode()
    def _run_ner(self, key: Hashable, texts: list[str]) -> list[list[dict]]:
        return self.tagger(texts)

    def _embed_model(self) -> torch.nn.Module:
        return self.tagger.model.backbone
