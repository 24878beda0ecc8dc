"""Multi-label classification: any number of labels per record (M2, M5).

A record's labels come from a list field, a delimited string, Label Studio multi-choice,
Doccano multi-label, or the entity types of its spans (`labels`); the model has one sigmoid
output per label trained with binary cross-entropy on the shared loop (`encode`, `train`); each
label's decision threshold is tuned on the validation split and saved with the model
(`thresholds`); evaluation scores micro / macro F1, subset accuracy and Hamming loss against a
one-vs-rest TF-IDF + logistic-regression baseline (`evaluate`, `metrics`); `serving` answers
/v1/classify with every label over its threshold.

The headline metric is micro-F1: label sets are sparse and skewed (a few labels carry most of
the decisions, rare ones have a handful of test examples), and micro-F1 scores every
(text, label) decision alike, where macro-F1 swings with the rarest label's few examples.
Macro-F1 is reported beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from verticalize.config import BaselineError, Config, LabelError, MetricError
from verticalize.export.card import usage_lines
from verticalize.plugins import TaskPlugin
from verticalize.tasks.multilabel.labels import (
    NO_LABELS,
    SEP,
    MultilabelConfig,
    labels_of,
    parse_label,
)
from verticalize.tasks.multilabel.metrics import METRICS, SUMMARY
from verticalize.tasks.multilabel.report import render_multilabel

PER_LABEL = ("f1", "precision", "recall")


class FieldError(BaselineError):
    """A field this task cannot take; the config's error formatter shows loc, value, fix."""

    def __init__(self, loc: tuple, value, message: str, fix: str):
        ValueError.__init__(self, message)
        self.loc, self.value, self.fix = loc, value, fix


def _check_metric(metric: str, labels: list[str] | None, loc: tuple, stop: bool) -> None:
    """A known aggregate, `loss` (validation, for stopping), latency (targets), or
    f1/precision/recall:<label> with the label in data.labels when that is given."""
    kind, _, label = metric.partition(":")
    if kind in PER_LABEL and label:
        if labels is not None and label not in labels:
            raise LabelError(loc, label, labels)
        return
    extra = ("loss",) if stop else ("latency_ms_per_example",)
    if metric not in METRICS + extra:
        raise MetricError(loc, metric, [*METRICS, *extra, "f1:<label>"])


def check_config(cfg: Config) -> None:
    """eval.targets and train.early_stopping.metric name multi-label metrics; data.label_bins
    (numbers → one class) has no meaning here."""
    if cfg.data.label_bins:
        raise FieldError(
            ("data", "label_bins"),
            cfg.data.label_bins,
            "label_bins maps a number to one class; a multilabel record has a set of labels",
            "remove data.label_bins, or set task: classification",
        )
    labels = cfg.data.labels
    for i, lab in enumerate(labels or []):
        if SEP in lab or lab == NO_LABELS:
            raise FieldError(
                ("data", "labels", i),
                lab,
                f"'{SEP}' joins a record's labels and {NO_LABELS!r} marks a record without any",
                "rename the label",
            )
    for i, t in enumerate(cfg.eval.targets):
        _check_metric(t.metric, labels, ("eval", "targets", i, "metric"), stop=False)
    stop = cfg.train.early_stopping.metric
    _check_metric(stop, labels, ("train", "early_stopping", "metric"), stop=True)


def tune_metric(metric: str, cfg: Config) -> tuple[str, str | None]:
    try:
        _check_metric(metric, cfg.data.labels, ("tune", "metric"), stop=True)
    except (MetricError, LabelError) as e:
        return metric, f"{e}. Fix: use one of: {', '.join([*METRICS, 'loss', 'f1:<label>'])}."
    return metric, None


def label_set_record(rec: dict) -> tuple[dict | None, str | None]:
    """A feedback correction (a list of labels, {"labels": [...]}, or one label) as a training
    record whose label is that list (read back by parse_label; [] = no label applies)."""
    from verticalize.serve.feedback import _input_text

    text, reason = _input_text(rec)
    if text is None:
        return None, reason
    value = rec["correction"]
    if isinstance(value, dict):
        value = value.get("labels", value.get("label"))
    if isinstance(value, str) and value.strip():
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        return None, f"bad_correction: a multilabel correction is a list of labels, got {value!r}"
    return {"text": text, "label": sorted({x.strip() for x in value})}, None


def train(cfg, folder, out_dir, labels, tracker=None, check=None) -> dict:
    from verticalize.tasks.multilabel.train import train_multilabel

    return train_multilabel(cfg, folder, out_dir, labels, tracker, check)


def workload(cfg: Config, train_records, val_records, labels):
    from verticalize.plan.workload import single_pass
    from verticalize.tasks.multilabel.train import multilabel_setup

    model, _, _, _, recipe = multilabel_setup(cfg, train_records, val_records, labels)
    return single_pass(cfg, model, recipe, train_records, val_records)


def evaluate(cfg, folder, data_m, train_m, test, out_dir):
    from verticalize.tasks.multilabel.evaluate import evaluate_multilabel

    return evaluate_multilabel(cfg, folder, data_m, train_m, test, out_dir)


def score_predictions(cfg: Config, rows: list[dict], data_m: dict) -> dict:
    """The model's metrics on some rows of predictions.jsonl."""
    from verticalize.tasks.multilabel.metrics import indicator, multilabel_metrics

    labels = data_m["labels"]
    gold, pred = [r["gold"] for r in rows], [r["pred"] for r in rows]
    return multilabel_metrics(indicator(gold, labels), indicator(pred, labels), labels)


def export_labels(cfg: Config, model_out: Path, data_m: dict) -> list[str]:
    """The sigmoid outputs' order."""
    id2label = json.loads((model_out / "config.json").read_text("utf-8"))["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def card_usage(cfg: Config, info: dict) -> list[str]:
    python = [
        "from verticalize import api",
        'api.predict("path/to/this/folder", ["a text"])  # labels over their thresholds, probs',
        "# thresholds.json holds each label's decision threshold (tuned on validation)",
    ]
    return usage_lines(info, "classify", python)


def detect(folder: Path) -> bool:
    """A sequence classifier with independent sigmoid outputs."""
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    archs = config.get("architectures") or [""]
    multi = config.get("problem_type") == "multi_label_classification"
    return archs[0].endswith("SequenceClassification") and multi


def engine(folder: Path, runtime: str = "torch", version: str | None = None):
    from verticalize.tasks.multilabel.serving import MultilabelEngine

    return MultilabelEngine(folder, runtime, version)


def predictor(folder: Path, batch_size: int = 32):
    from verticalize.tasks.multilabel.serving import MultilabelClassifier

    return MultilabelClassifier(folder, batch_size)


plugin = TaskPlugin(
    name="multilabel",
    description="any number of labels per text (topics, symptoms, entity kinds mentioned)",
    default_base="all-MiniLM-L6-v2",
    main_metric="micro_f1",
    default_stop_metric="micro_f1",
    summary_metrics=SUMMARY,
    check_config=check_config,
    tune_metric=tune_metric,
    section=("multilabel", MultilabelConfig),
    baselines=("tfidf_lr",),
    methods=("full", "freeze", "layer_reduction", "lora"),
    target="label",
    target_detail="multilabel needs a label list or delimited label string on every record "
    "(empty = no label applies, with multilabel.allow_empty)",
    parse_label=parse_label,
    labels_of=labels_of,
    min_classes=2,
    fingerprint_sections=lambda cfg: [cfg.task_section().model_dump(mode="json")],
    data_sections=lambda cfg: [cfg.task_section().model_dump(mode="json")],  # parse_label reads it
    train=train,
    masked_lm=True,
    workload=workload,
    evaluate=evaluate,
    score_predictions=score_predictions,
    render_report=render_multilabel,
    export_labels=export_labels,
    card_usage=card_usage,
    detect=detect,
    engine=engine,
    routes=("classify",),
    predictor=predictor,
    card_words="multi-label text classification",
    pipeline_tag="text-classification",
    intended_use=lambda cfg, labels: f"tagging {cfg.domain} texts with any of {', '.join(labels)}",
    accuracy_metric="subset_accuracy",
    feedback_record=label_set_record,
)
