"""Text classification: one label per record, a sequence-classification head (M1).

The plugin: records → `encode.EncodedRecords`; training in `train`; evaluation (baselines,
calibration, error analysis, robustness, attacks, cross-validation) in `evaluate`; ONNX / INT8
export in `runtimes`; the serving engine and `Classifier` in `serving`.
"""

from __future__ import annotations

import json
from pathlib import Path

from verticalize.config import AGGREGATE_METRICS, Config, check_metric_name
from verticalize.export.card import usage_lines
from verticalize.plugins import EXTRAS, TaskPlugin
from verticalize.serve.feedback import label_record
from verticalize.tasks.classification.report import render_classification

SUMMARY = ["accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall"]


def check_config(cfg: Config) -> None:
    """Targets and the early-stopping metric name known metrics and labels."""
    labels = cfg.data.labels
    if cfg.data.label_bins and labels:
        from verticalize.config import LabelError

        for cls_name in cfg.data.label_bins:
            if cls_name not in labels:
                raise LabelError(("data", "label_bins", cls_name), cls_name, labels)
    for i, t in enumerate(cfg.eval.targets):
        check_metric_name(t.metric, labels, ("eval", "targets", i, "metric"))
    if cfg.train.early_stopping.metric != "loss":  # validation loss is also allowed here
        check_metric_name(
            cfg.train.early_stopping.metric, labels, ("train", "early_stopping", "metric")
        )


def tune_metric(metric: str, cfg: Config) -> tuple[str, str | None]:
    if metric == "loss":
        return metric, None
    try:
        check_metric_name(metric, cfg.data.labels, ("tune", "metric"))
    except ValueError as e:
        known = list(AGGREGATE_METRICS) + ["loss", "f1:<label>"]
        return metric, f"{e}. Fix: use one of: {', '.join(known)}."
    return metric, None


def train(cfg, folder, out_dir, labels, tracker=None, check=None) -> dict:
    from verticalize.tasks.classification.train import train_classification

    return train_classification(cfg, folder, out_dir, labels, tracker, check)


def workload(cfg: Config, train_records, val_records, labels):
    from verticalize.plan.workload import single_pass
    from verticalize.tasks.classification.train import classification_setup

    model, _, _, recipe = classification_setup(cfg, train_records, val_records, labels)
    return single_pass(cfg, model, recipe, train_records, val_records)


def evaluate(cfg, folder, data_m, train_m, test, out_dir):
    from verticalize.tasks.classification.evaluate import evaluate_classification

    return evaluate_classification(cfg, folder, data_m, train_m, test, out_dir)


def score_predictions(cfg: Config, rows: list[dict], data_m: dict) -> dict:
    """The model's metrics on some rows of predictions.jsonl."""
    from verticalize.metrics import classification_metrics

    gold, pred = [r["gold"] for r in rows], [r["pred"] for r in rows]
    return classification_metrics(gold, pred, data_m["labels"])


def export_formats(cfg, folder, model_out, test) -> dict:
    from verticalize.tasks.classification.runtimes import measure_onnx

    return measure_onnx(cfg, folder, model_out, test)


def export_labels(cfg: Config, model_out: Path, data_m: dict) -> list[str]:
    """The logits' order."""
    id2label = json.loads((model_out / "config.json").read_text("utf-8"))["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def card_usage(cfg: Config, info: dict) -> list[str]:
    python = [
        "from transformers import pipeline",
        'clf = pipeline("text-classification", model="path/to/this/folder")',
    ]
    if info.get("onnx_int8"):
        python += [
            "",
            "from verticalize.export.onnx import OnnxClassifier",
            'probs = OnnxClassifier("path/to/this/folder").predict_proba(["a text"])',
        ]
    return usage_lines(info, "classify", python)


def detect(folder: Path) -> bool:
    """A sequence classifier with one label per text."""
    config = _config(folder)
    archs = config.get("architectures") or [""]
    single = config.get("problem_type") in (None, "single_label_classification")
    return archs[0].endswith("SequenceClassification") and single


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def engine(folder: Path, runtime: str = "torch", version: str | None = None):
    from verticalize.tasks.classification.serving import ClassificationEngine

    return ClassificationEngine(folder, runtime, version)


def predictor(folder: Path, batch_size: int = 32):
    from verticalize.tasks.classification.serving import Classifier

    return Classifier(folder, batch_size)


plugin = TaskPlugin(
    name="classification",
    description="one label per text (sentiment, topic, triage)",
    default_base="all-MiniLM-L6-v2",
    main_metric="macro_f1",
    default_stop_metric="macro_f1",
    summary_metrics=SUMMARY,
    check_config=check_config,
    tune_metric=tune_metric,
    baselines=("tfidf_lr", "lightgbm"),
    methods=("full", "freeze", "layer_reduction", "lora"),
    augment=True,
    extras=EXTRAS,  # every optional evaluation
    target="label",
    target_detail="classification needs a label on every record",
    min_classes=2,
    train=train,
    masked_lm=True,
    workload=workload,
    evaluate=evaluate,
    score_predictions=score_predictions,
    render_report=render_classification,
    export_formats=export_formats,
    export_labels=export_labels,
    card_usage=card_usage,
    detect=detect,
    engine=engine,
    routes=("classify",),
    predictor=predictor,
    card_words="text classification",
    pipeline_tag="text-classification",
    intended_use=lambda cfg, labels: f"classifying {cfg.domain} texts into {', '.join(labels)}",
    accuracy_metric="accuracy",
    feedback_record=label_record,
)
