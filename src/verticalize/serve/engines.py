"""Model backends for the service: one Engine per loaded model version.

An engine knows its task, its version and which kinds of work it does ("classify", "ner",
"embed", "generate", "stream"); `run_batch(key, items)` is what the batcher calls in the
worker thread. Each task plugin brings its engine (`TaskPlugin.engine`), a subclass of
`Engine`. Every model also gives embeddings: mean-pooled, L2-normalised last
hidden states of its encoder / backbone / decoder.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verticalize.errors import ServeError
from verticalize.plugins import get_task

INFO_FILE = "verticalize.json"  # written by export (H1): version, metrics, labels …

# a batch is run as length-sorted chunks of this many texts: on CPU, larger chunks gain
# little per text and pad short texts to the longest one (bench/serve.py)
CHUNK = 32
# torch's length buckets: ~1.5x wide, so a batch pads to at most ~1.5x its shortest text
TORCH_BUCKETS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)


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
    kinds: tuple[str, ...] = ()  # the kinds of work it does; the routes check this
    runtime = "torch"  # or "onnx": load_engine sets what it chose
    threads = 0  # intra-op threads (use_threads); 0 = torch's default

    def __init__(self, folder: Path, version: str | None = None):
        self.folder = folder
        self.info = model_info(folder)
        self.version = str(self.info.get("version") or version or folder_version(folder))
        self.labels: list[str] | None = None
        self.tokenizer: Any = None
        self.counter: Any = None  # a tokenizer copy used only on the event loop thread
        self.max_tokens = 512  # the model's own input limit, in tokens

    def _set_tokenizer(self, tokenizer, model_limit: int | None) -> None:
        self.tokenizer = tokenizer
        # fast tokenizers refuse concurrent use from two threads ("Already borrowed")
        self.counter = copy.deepcopy(tokenizer)
        limits = [x for x in (model_limit, tokenizer.model_max_length) if x and x < 10**7]
        self.max_tokens = min(limits) if limits else 512

    @functools.cached_property
    def embedding_size(self) -> int | None:
        """Length of this model's embeddings (the hidden size in its config.json: they pool
        the last hidden state); None when the folder does not say."""
        from transformers import AutoConfig

        try:
            size = getattr(AutoConfig.from_pretrained(self.folder), "hidden_size", None)
        except (OSError, ValueError):
            return None
        return size if isinstance(size, int) else None

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

    def length_buckets(self) -> list[int]:
        """The batcher's default token-length bucket edges for this engine's runtime: ONNX
        Runtime gains nothing from a larger pass and loses to padding (bench/serve.py: one
        bucket per token count gave ~1.6x the requests/s of 1.5x-wide buckets at 32 clients),
        so one bucket per token count; torch pays ~64 tokens' worth per pass, so wider ones."""
        if self.runtime == "onnx":
            return list(range(1, self.max_tokens + 1))
        return list(TORCH_BUCKETS)

    def use_threads(self, n: int) -> None:
        """Run inference on `n` intra-op threads: torch's, and an ONNX Runtime session's."""
        torch.set_num_threads(n)
        self.threads = n
        session = getattr(self, "onnx", None)
        if session is not None and hasattr(session, "use_threads"):
            session.use_threads(n)

    def close(self) -> None:
        """Drop the model's memory (the batcher has drained)."""
        for name in ("model", "classifier", "tagger", "onnx", "_encoder"):
            if hasattr(self, name):
                setattr(self, name, None)


def onnx_published(folder: Path) -> bool:
    """Whether `folder` is an export whose INT8 ONNX model passed the export gate: its
    verticalize.json names onnx_int8, says published, and the file is there."""
    info = model_info(folder)
    int8 = info.get("onnx_int8")
    return bool(int8 and info.get("published") is True and (folder / str(int8)).is_file())


def choose_runtime(folder: Path, task: str, requested: str = "auto") -> str:
    """The runtime to serve `folder` with: `requested`, or for "auto" onnx when the task has
    an ONNX engine and the export published an INT8 model (`onnx_published`), else torch."""
    if requested != "auto":
        return requested
    supported = get_task(task).supports("onnx_runtime")
    return "onnx" if supported and onnx_published(folder) else "torch"


def serve_threads(requested: int = 0) -> int:
    """Intra-op threads for inference: `requested`, else every core up to 8, less one on 2
    to 4 cores, where the event loop (HTTP, JSON, tokenizing) needs a core of its own: on 2
    cores one thread gave ~1.8x the requests/s of two (ONNX INT8, 32 clients, bench/serve.py;
    torch: no worse)."""
    if requested:
        return requested
    cores = os.cpu_count() or 1
    return max(1, min(cores - 1 if 2 <= cores <= 4 else cores, 8))


def load_engine(
    folder: Path,
    task: str,
    runtime: str = "torch",
    version: str | None = None,
    threads: int = 0,
) -> Engine:
    """The engine for a model folder of `task` (from verticalize.predict.model_task): the task
    plugin's own, on `runtime` (auto: see `choose_runtime`) with `threads` intra-op threads
    (0: `serve_threads`)."""
    plugin = get_task(task)
    if plugin.engine is None:
        raise ServeError(
            f"{folder}: task {task!r} has no serving engine. Fix: serve another model."
        )
    runtime = choose_runtime(folder, task, runtime)
    if runtime == "onnx" and not plugin.supports("onnx_runtime"):
        raise ServeError(
            f"{folder}: serve.runtime onnx covers classification models; this one is {task}. "
            "Fix: set serve.runtime: torch (or auto)."
        )
    n = serve_threads(threads)
    torch.set_num_threads(n)  # before loading: the engine's sessions take it from here
    engine = plugin.engine(folder, runtime, version)
    engine.runtime = runtime
    engine.use_threads(n)
    return engine
