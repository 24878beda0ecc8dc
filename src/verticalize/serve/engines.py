"""Model backends for the service: one Engine per loaded model version.

An engine knows its task, its version and which kinds of work it does ("classify", "ner",
"embed", "generate", "stream"); `run_batch(key, items)` is what the batcher calls in the
worker thread. Classification shares `verticalize.predict.Classifier` with `predict` (or runs
the exported INT8 ONNX model), NER uses `tasks.ner.Tagger`, generation lives in
`serve.generation`. Every model also gives embeddings: mean-pooled, L2-normalised last
hidden states of its encoder / backbone / decoder.
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verticalize.errors import ServeError

INFO_FILE = "verticalize.json"  # written by export (H1): version, metrics, labels …

# a batch is run as length-sorted chunks of this many texts: on CPU, larger chunks gain
# little per text and pad short texts to the longest one (bench/serve.py)
CHUNK = 32

# which kinds of work each task's engine does; the routes check this
KINDS = {
    "classification": ("classify", "embed"),
    "ner": ("ner", "embed"),
    "generation": ("generate", "stream", "embed"),
}


def model_info(folder: Path) -> dict:
    """verticalize.json of an exported model folder, or {} for a plain model/ folder."""
    path = folder / INFO_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ServeError(
            f"{path}: not readable JSON ({e}). Fix: re-run `verticalize export`, or delete it "
            "to serve the folder under its folder name."
        ) from None
    return info if isinstance(info, dict) else {}


def folder_version(folder: Path) -> str:
    """A version label for a folder without verticalize.json: its name, or its run's name
    for <run>/model and <run>/export/model."""
    folder = folder.resolve()
    if folder.name != "model":
        return folder.name
    parent = folder.parent
    return parent.parent.name if parent.name == "export" else parent.name


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions, L2-normalised: [batch, hidden]."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)


def encoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The part of a model whose output has last_hidden_state (a head-less base model)."""
    if hasattr(model, "get_base_model"):  # PEFT wrapper
        model = model.get_base_model()
    return getattr(model, "base_model", model)


class Engine(ABC):
    """A loaded model version. Subclasses set task, tokenizer and the kinds they run."""

    task = ""

    def __init__(self, folder: Path, version: str | None = None):
        self.folder = folder
        self.info = model_info(folder)
        self.version = str(self.info.get("version") or version or folder_version(folder))
        self.labels: list[str] | None = None
        self.tokenizer: Any = None
        self.counter: Any = None  # a tokenizer copy used only on the event loop thread
        self.max_tokens = 512  # the model's own input limit, in tokens

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS[self.task]

    def _set_tokenizer(self, tokenizer, model_limit: int | None) -> None:
        self.tokenizer = tokenizer
        # fast tokenizers refuse concurrent use from two threads ("Already borrowed")
        self.counter = copy.deepcopy(tokenizer)
        limits = [x for x in (model_limit, tokenizer.model_max_length) if x and x < 10**7]
        self.max_tokens = min(limits) if limits else 512

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text, as the model will see them (special tokens included)."""
        return [len(ids) for ids in self.counter(texts, add_special_tokens=True)["input_ids"]]

    def test_metric(self) -> tuple[float | None, float | None]:
        """(main test metric, test accuracy) from verticalize.json, for /metrics."""
        from verticalize.serve.metrics import accuracy_of  # ner: entity F1 stands in

        main = (self.info.get("metrics") or {}).get(self.info.get("metric") or "")
        return (float(main) if isinstance(main, int | float) else None, accuracy_of(self.info))

    def run_batch(self, key: Hashable, items: list[Any]) -> list[Any]:
        """Results for one batch of items of kind key[0] (runs in the worker thread)."""
        kind = key[0] if isinstance(key, tuple) else key
        return getattr(self, f"_run_{kind}")(key, items)

    @abstractmethod
    def _embed_model(self) -> torch.nn.Module:
        """The encoder whose last hidden state is pooled; each task's engine supplies it."""

    @torch.inference_mode()
    def _run_embed(self, key: Hashable, texts: list[str]) -> list[np.ndarray]:
        model = self._embed_model()
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
        vectors: list[np.ndarray] = [np.zeros(0)] * len(texts)
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), CHUNK):  # length-sorted chunks: little padding
            idx = order[start : start + CHUNK]
            width = max(len(enc[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(enc[i])] = torch.tensor(enc[i])
                mask[row, : len(enc[i])] = 1
            output = model(input_ids=ids, attention_mask=mask)
            hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            for row, vec in zip(idx, mean_pool(hidden, mask).numpy(), strict=True):
                vectors[row] = vec
        return vectors

    def warm_up(self) -> None:
        """One tiny batch, so the first request does not pay for lazy initialisation."""
        kind = self.kinds[0]
        if kind in ("classify", "ner"):
            self.run_batch((kind,), ["warm up"])

    def close(self) -> None:
        """Drop the model's memory (the batcher has drained)."""
        for name in ("model", "classifier", "tagger", "onnx", "_encoder"):
            if hasattr(self, name):
                setattr(self, name, None)


class ClassificationEngine(Engine):
    task = "classification"

    def __init__(self, folder: Path, runtime: str = "torch", version: str | None = None):
        super().__init__(folder, version)
        from verticalize.predict import Classifier

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
        from verticalize.predict import label_results

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


class NerEngine(Engine):
    task = "ner"

    def __init__(self, folder: Path, version: str | None = None):
        super().__init__(folder, version)
        from verticalize.tasks.ner import Tagger

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


def load_engine(
    folder: Path, task: str, runtime: str = "torch", version: str | None = None
) -> Engine:
    """The engine for a model folder of `task` (from verticalize.predict.model_task)."""
    if task == "classification":
        return ClassificationEngine(folder, runtime, version)
    if runtime == "onnx":
        raise ServeError(
            f"{folder}: serve.runtime onnx covers classification models; this one is {task}. "
            "Fix: set serve.runtime: torch."
        )
    if task == "ner":
        return NerEngine(folder, version)
    from verticalize.serve.generation import GenerationEngine

    return GenerationEngine(folder, version)
