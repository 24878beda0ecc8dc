"""The original model against its ONNX copies on the test split: the metric, one-at-a-time
latency and size on disk of torch fp32, ONNX fp32 and ONNX INT8 (X2), and the publish gate."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from verticalize.config import Config
from verticalize.console import console
from verticalize.errors import ExportError
from verticalize.export.onnx import (
    FP32_FILE,
    INT8_FILE,
    ONNX_DIR,
    OnnxClassifier,
    export_classifier,
    onnx_bytes,
    quantize_int8,
)
from verticalize.export.onnx import weights_bytes as torch_bytes
from verticalize.metrics import classification_metrics, lower_is_better, metric_value
from verticalize.runfolder import RunFolder

SUMMARY = ("accuracy", "macro_f1", "weighted_f1")
# ONNX fp32 must reproduce torch: a larger gap means a broken export, not rounding
MAX_FP32_PROB_DIFF = 1e-3


def median_latency_ms(predictors: dict[str, Callable[[str], object]], texts: list[str]) -> dict:
    """Median milliseconds of one prediction of one text, per predictor. Each one runs all
    texts in a block after a warm-up, in the order given and then reversed (A B C C B A), so
    a drift in machine load hits all alike. Blocks, not turns per text: ONNX Runtime's
    threads keep spinning after a call and would slow whatever runs right after them."""
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for name in [*predictors, *reversed(predictors)]:
        predict = predictors[name]
        for text in texts[:3]:
            predict(text)
        for text in texts:
            start = time.perf_counter()
            predict(text)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def publish_decision(
    metric: str, original: float, quantized: float, max_drop: float
) -> tuple[float, str | None]:
    """(drop, reason): the drop is how much worse the quantized model scores (positive =
    worse, whichever way the metric points); reason is None when it may be published."""
    drop = (quantized - original) if lower_is_better(metric) else (original - quantized)
    if drop > max_drop:
        return drop, (
            f"the INT8 model's {metric} on the test split is {quantized:.4f} against "
            f"{original:.4f} for the original: a drop of {drop:.4f}, more than "
            f"export.max_metric_drop = {max_drop:.4f}"
        )
    return drop, None


def compare_runtimes(
    model_dir: Path,
    export_dir: Path,
    test: list[dict],
    labels: list[str],
    metric: str,
    max_length: int,
    batch_size: int,
    latency_examples: int,
    quantized: bool,
) -> dict:
    """Score torch (`model_dir`) and the ONNX models in `export_dir`/onnx on `test`; time
    them one text at a time on the first `latency_examples` test texts. Raises ExportError
    when ONNX fp32 does not reproduce torch, or `metric` is not a classification metric."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from verticalize.tasks.classification.encode import predict_records

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    threads = torch.get_num_threads()  # ONNX Runtime gets the same number of threads
    runtimes: dict[str, OnnxClassifier] = {
        "onnx": OnnxClassifier(export_dir, quantized=False, threads=threads)
    }
    if quantized:
        runtimes["onnx_int8"] = OnnxClassifier(export_dir, quantized=True, threads=threads)

    texts, gold = [r["text"] for r in test], [r["label"] for r in test]
    probs = {"torch": predict_records(model, tokenizer, test, labels, max_length, batch_size)[0]}
    for name, clf in runtimes.items():
        probs[name] = clf.predict_proba(texts, batch_size)
    fp32_diff = float(np.abs(probs["torch"] - probs["onnx"]).max()) if texts else 0.0
    if fp32_diff > MAX_FP32_PROB_DIFF:
        raise ExportError(
            f"{export_dir / ONNX_DIR / FP32_FILE}: ONNX Runtime's probabilities differ from "
            f"torch's by up to {fp32_diff:.2e} on the test split (allowed "
            f"{MAX_FP32_PROB_DIFF:.0e}), so the export is wrong. Fix: set export.onnx: false "
            "and serve with serve.runtime: torch (and report the model type)."
        )
    scores = {
        name: classification_metrics(gold, [labels[i] for i in p.argmax(axis=1)], labels)
        for name, p in probs.items()
    }
    if metric_value(scores["torch"], metric) is None:
        raise ExportError(
            f"export.metric: {metric!r} is not a classification metric. Fix: use one of "
            f"accuracy, macro_f1, weighted_f1, micro_f1, macro_precision, macro_recall or "
            f"f1:<label> with a label from {labels}."
        )

    def torch_one(text: str) -> object:
        return predict_records(model, tokenizer, [{"text": text}], labels, max_length, 1)

    timed = {"torch": torch_one} | {
        name: (lambda text, clf=clf: clf.predict_proba([text])) for name, clf in runtimes.items()
    }
    latency = median_latency_ms(timed, texts[:latency_examples])
    onnx_dir = export_dir / ONNX_DIR
    sizes = {"torch": torch_bytes(model_dir), "onnx": onnx_bytes(onnx_dir / FP32_FILE)}
    if quantized:
        sizes["onnx_int8"] = onnx_bytes(onnx_dir / INT8_FILE)
    return {
        "metric": metric,
        "metrics": {n: float(metric_value(s, metric)) for n, s in scores.items()},
        "summary": {n: {k: s[k] for k in SUMMARY} for n, s in scores.items()},
        "latency_ms": latency,
        "size_bytes": sizes,
        "onnx_fp32_max_prob_diff": fp32_diff,
        "threads": threads,
        "latency_examples": min(latency_examples, len(texts)),
        "test_size": len(test),
        "torch_test_metrics": scores["torch"],
    }


def measure_onnx(cfg: Config, folder: RunFolder, model_out: Path, test: list[dict]) -> dict:
    """ONNX fp32 (+ INT8) under export/model/onnx/, measured against torch on the test split."""
    onnx_dir = model_out / ONNX_DIR
    console.print("export: ONNX (dynamo exporter, dynamic batch and sequence axes)")
    export_classifier(folder.model_dir, onnx_dir / FP32_FILE)
    if cfg.export.quantize:
        console.print("export: INT8 dynamic quantization (ONNX Runtime)")
        quantize_int8(onnx_dir / FP32_FILE, onnx_dir / INT8_FILE)
    labels = json.loads((model_out / "config.json").read_text("utf-8"))["id2label"]
    metric = cfg.export.metric or "macro_f1"
    console.print(f"export: scoring torch / ONNX on {len(test)} test records, timing one at a time")
    r = compare_runtimes(
        folder.model_dir,
        model_out,
        test,
        [labels[str(i)] for i in range(len(labels))],
        metric,
        cfg.model.max_length,
        cfg.eval.batch_size,
        cfg.export.latency_examples,
        cfg.export.quantize,
    )
    fields = {
        **r,
        "onnx": f"{ONNX_DIR}/{FP32_FILE}",
        "onnx_int8": f"{ONNX_DIR}/{INT8_FILE}" if cfg.export.quantize else None,
        "metric_drop": None,
        "latency_ratio": None,
        "size_ratio": None,
    }
    if cfg.export.quantize:
        lat, size = r["latency_ms"], r["size_bytes"]
        drop, reason = publish_decision(
            metric, r["metrics"]["torch"], r["metrics"]["onnx_int8"], cfg.export.max_metric_drop
        )
        fields |= {
            "metric_drop": drop,
            "latency_ratio": lat["onnx_int8"] / lat["torch"],
            "size_ratio": size["onnx_int8"] / size["torch"],
            "published": reason is None,
            "reason": reason,
        }
    fields["metrics"].setdefault("onnx_int8", None)
    return fields
