"""ONNX export of a sequence classifier, INT8 dynamic quantization, and the ONNX Runtime
classifier that runs them (X2).

The graph takes `input_ids` and `attention_mask` (int64, dynamic batch and sequence axes) and
returns `logits`. It is written by the dynamo exporter (`torch.onnx.export(dynamo=True)`):
the TorchScript exporter bakes transformers' attention-mask code into constants and its logits
differ from torch by ~0.4 on padded batches.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from verticalize.errors import ExportError

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
# protobuf cannot hold a graph over 2 GiB: bigger models keep their weights in <file>.data
EXTERNAL_DATA_BYTES = 1_500_000_000


def weights_bytes(model_dir: Path) -> int:
    """Bytes of the model's weight files (*.safetensors, else *.bin)."""
    files = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    return sum(f.stat().st_size for f in files)


def onnx_bytes(path: Path) -> int:
    """Size of an ONNX model on disk, its external weights file included."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


@contextmanager
def _quiet_exporter():
    """Hide the exporter's progress lines and optional-dependency warnings (torchvision)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_classifier(model_dir: Path, out: Path) -> Path:
    """Write the sequence classifier in `model_dir` (a Hugging Face folder) to `out` as ONNX:
    (input_ids, attention_mask) -> logits, batch and sequence axes dynamic. Raises ExportError
    when torch cannot export the architecture."""
    import onnx
    import torch
    from torch.export import Dim
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # two lengths and a batch of two, so neither axis is specialised to a constant
    sample = tokenizer(
        ["an example sentence to trace the graph with", "a shorter one"],
        padding=True,
        return_tensors="pt",
    )

    class Logits(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, attention_mask):
            return self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits

    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: Dim("batch"), 1: Dim("sequence")}
    try:
        with _quiet_exporter():
            torch.onnx.export(
                Logits(model),
                (sample["input_ids"], sample["attention_mask"]),
                str(out),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_shapes={"input_ids": axes, "attention_mask": axes},
                dynamo=True,
                external_data=weights_bytes(model_dir) > EXTERNAL_DATA_BYTES,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; the user needs one message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"{model_dir}: torch.onnx.export could not export {type(model).__name__} "
            f"({first}). Fix: set export.onnx: false to publish the Hugging Face folder and "
            "model card only, and serve it with serve.runtime: torch."
        ) from None
    # the exporter's value_info trips ONNX shape inference inside quantize_dynamic
    # ("Inferred shape and existing shape differ"); ONNX Runtime does not need it
    graph = onnx.load(str(out), load_external_data=False)
    graph.graph.ClearField("value_info")
    onnx.save(graph, str(out))
    return out


def quantize_int8(fp32: Path, out: Path) -> Path:
    """INT8 dynamic quantization (weights int8 per output channel, activations quantized at
    run time) with ONNX Runtime's quantize_dynamic; writes `out`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_exporter():  # its "consider pre-processing" warning is not actionable here
        quantize_dynamic(
            fp32,
            out,
            weight_type=QuantType.QInt8,  # QUInt8 weights run ~1.5x slower on x86
            # one scale per tensor cost drug-reviews 3.6 points of macro-F1 at batch 64
            # (0.4 at batch 1); per channel: none at either, same size and speed
            per_channel=True,
            use_external_data_format=fp32.with_name(fp32.name + ".data").is_file(),
        )
    return out


def default_threads() -> int:
    """Intra-op threads: every core up to 8 (more rarely helps a small encoder)."""
    return max(1, min(os.cpu_count() or 1, 8))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class OnnxClassifier:
    """The exported classifier under ONNX Runtime: `OnnxClassifier(folder).predict_proba(texts)`
    gives class probabilities [n, len(labels)] in the order of `.labels`. `folder` is an
    exported model folder (export/model/, with onnx/). Texts are tokenized like training:
    truncated to the tokenizer's model_max_length (export sets it to model.max_length) and
    right-padded per batch."""

    def __init__(self, folder: Path, quantized: bool = True, threads: int | None = None):
        from transformers import AutoTokenizer

        folder = Path(folder)
        path = folder / ONNX_DIR / (INT8_FILE if quantized else FP32_FILE)
        if not path.is_file():
            raise ExportError(
                f"{path}: no such ONNX model. Fix: run `verticalize export` on the run "
                "(classification, with export.onnx: true"
                + (" and export.quantize: true)." if quantized else ").")
            )
        config = json.loads((folder / "config.json").read_text("utf-8"))
        id2label = config.get("id2label") or {}
        self.labels: list[str] = [id2label[str(i)] for i in range(len(id2label))]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        limits = [self.tokenizer.model_max_length, config.get("max_position_embeddings")]
        self.max_length = min(x for x in limits if x) if any(limits) else 512
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else config.get("pad_token_id") or 0
        self.path = path
        self.use_threads(threads or default_threads())

    def use_threads(self, n: int) -> None:
        """(Re)open the session with `n` intra-op threads (the service sets serve.threads)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = n
        options.inter_op_num_threads = 1  # one graph, run sequentially: no second pool
        self.threads = n
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities for every text, batched by length (shortest first)."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=False
        )["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), width), self.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (logits,) = self.session.run(
                ["logits"], {"input_ids": input_ids, "attention_mask": mask}
            )
            out[idx] = softmax(logits.astype(np.float32))
        return out
