"""Regression at prediction time: `Regressor` (shared by `predict`, eval and the service)
and the serving engine; each text's answer is {"score": value}, in the target's unit."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import numpy as np
import torch

from verticalize.models.text_batches import chunked_outputs
from verticalize.serve.engines import CHUNK, Engine, encoder_of
from verticalize.tasks.regression.model import (
    EncodedRecords,
    Scale,
    predict_outputs,
    saved_scale,
)


class Regressor:
    """A trained one-output model folder: `Regressor(folder)(["text", …])` gives, per text,
    {"score": value} in the target's unit. The saved output layer already undoes the
    standardisation; a log1p transform is undone here."""

    def __init__(self, folder: Path, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.batch_size = batch_size
        self.scale = saved_scale(self.model.config)

    def values(self, texts: list[str]) -> np.ndarray:
        """One predicted value per text, in the target's unit."""
        return self.scale.inverse(self.outputs(texts))

    def outputs(self, texts: list[str]) -> np.ndarray:
        """The model's output per text (log1p of the value with transform log1p); texts run
        in length-sorted chunks (`length_chunks`), so short texts are not padded to the
        longest one."""
        items = EncodedRecords(
            [{"text": t} for t in texts], self.tokenizer, Scale(), self.tokenizer.model_max_length
        ).items
        out = np.zeros(len(texts), dtype=np.float64)
        pad = self.tokenizer.pad_token_id
        return chunked_outputs(
            items,
            self.batch_size,
            lambda chunk: predict_outputs(self.model, chunk, pad, len(chunk)),
            out,
        )

    def __call__(self, texts: list[str]) -> list[dict]:
        return [{"score": round(float(v), 6)} for v in self.values(texts)]


class RegressionEngine(Engine):
    """/v1/classify answers {"score": value} per text; /v1/embeddings pools the encoder."""

    task = "regression"
    kinds = ("classify", "embed")

    def __init__(self, folder: Path, runtime: str = "torch", version: str | None = None):
        super().__init__(folder, version)
        self.regressor = Regressor(folder, batch_size=CHUNK)
        limit = getattr(self.regressor.model.config, "max_position_embeddings", None)
        self._set_tokenizer(self.regressor.tokenizer, limit)

    def _run_classify(self, key: Hashable, texts: list[str]) -> list[dict]:
        return self.regressor(texts)

    def _embed_model(self) -> torch.nn.Module:
        return encoder_of(self.regressor.model)

    def close(self) -> None:
        self.regressor = None
        super().close()
