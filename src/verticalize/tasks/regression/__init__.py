"""Regression: one number per text (a rating, a score, a count), one linear output (M5).

The plugin: `label:` parsed as a number at ingest (`parse_label`); a sequence-classification
model with one output trained with MSE or Huber on standardised targets (`model`, `train`);
MAE, RMSE, R², Spearman against TF-IDF + ridge (`metrics`, `evaluate`); {"score": value}
from `predict` and /v1/classify (`serving`). Its YAML section is `regression:` (`settings`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from verticalize.config import BaselineError, Config, MetricError
from verticalize.export.card import usage_lines
from verticalize.plugins import TaskPlugin
from verticalize.tasks.regression.metrics import METRICS
from verticalize.tasks.regression.settings import RegressionConfig, settings_of

STOP_METRICS = (*METRICS, "loss")  # what validation measures
TARGET_METRICS = (*METRICS, "latency_ms_per_example")  # what eval measures on test


class FieldError(BaselineError):
    """A field this task cannot take; the config's error formatter shows loc, value, fix."""

    def __init__(self, loc: tuple, value, message: str, fix: str):
        ValueError.__init__(self, message)
        self.loc, self.value, self.fix = loc, value, fix


def check_config(cfg: Config) -> None:
    """Numbers, not classes: no label set or bins; metric names this task measures."""
    d = cfg.data
    if d.label_bins:
        raise FieldError(
            ("data", "label_bins"),
            d.label_bins,
            "label_bins turns the number into classes, and task: regression predicts the number",
            "remove data.label_bins, or set task: classification",
        )
    if d.labels is not None:
        raise FieldError(
            ("data", "labels"),
            d.labels,
            "a regression target has no label set",
            "remove data.labels (every record's label is parsed as a number)",
        )
    for i, t in enumerate(cfg.eval.targets):
        if t.metric not in TARGET_METRICS:
            raise MetricError(("eval", "targets", i, "metric"), t.metric, list(TARGET_METRICS))
    stop = cfg.train.early_stopping.metric
    if stop not in STOP_METRICS:
        raise MetricError(("train", "early_stopping", "metric"), stop, list(STOP_METRICS))


def tune_metric(metric: str, cfg: Config) -> tuple[str, str | None]:
    if metric in STOP_METRICS:
        return metric, None
    return metric, f"unknown metric {metric!r}. Fix: use one of: {', '.join(STOP_METRICS)}."


def parse_label(row: dict, src, data_cfg, section=None) -> tuple[str | None, str | None]:
    """The row's target (data.sources[].label, or label_value) as a number string (the
    `regression:` section does not change it)."""
    raw = src.label_value if src.label_value is not None else row.get(src.label)
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    return parse_number(raw)


def parse_number(raw) -> tuple[str | None, str | None]:
    """(canonical number string such as "7" or "2.5", None), or (None, quarantine reason):
    missing_label, label_not_numeric (text, nan, inf)."""
    if raw is None or str(raw).strip() == "":
        return None, "missing_label"
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None, "label_not_numeric"
    if not math.isfinite(value):
        return None, "label_not_numeric"
    return (str(int(value)) if value.is_integer() else repr(value)), None


def train(cfg, folder, out_dir, labels, tracker=None, check=None) -> dict:
    from verticalize.tasks.regression.train import train_regression

    return train_regression(cfg, folder, out_dir, tracker, check)


def workload(cfg: Config, train_records, val_records, labels):
    from verticalize.plan.workload import single_pass
    from verticalize.tasks.regression.train import regression_setup

    model, _, _, recipe, _ = regression_setup(cfg, train_records, val_records)
    return single_pass(cfg, model, recipe, train_records, val_records)


def evaluate(cfg, folder, data_m, train_m, test, out_dir):
    from verticalize.tasks.regression.evaluate import evaluate_regression

    return evaluate_regression(cfg, folder, data_m, train_m, test, out_dir)


def score_predictions(cfg: Config, rows: list[dict], data_m: dict) -> dict:
    """The model's metrics on some rows of predictions.jsonl, on the scale the report uses
    (log1p of the values with regression.transform: log1p)."""
    from verticalize.tasks.regression.metrics import regression_metrics
    from verticalize.tasks.regression.model import Scale

    scale = Scale(transform=settings_of(cfg).transform)
    gold = scale.forward([r["gold"] for r in rows])
    return regression_metrics(gold, scale.forward([r["pred"] for r in rows]))


def card_usage(cfg: Config, info: dict) -> list[str]:
    python = [
        "from verticalize.tasks.regression.serving import Regressor",
        'Regressor("path/to/this/folder")(["a text"])  # [{"score": …}], in the target\'s unit',
    ]
    return usage_lines(info, "classify", python)


def value_record(rec: dict) -> tuple[dict | None, str | None]:
    """A feedback correction (a number, or {"score": number}) as a training record."""
    from verticalize.serve.feedback import _input_text

    text, reason = _input_text(rec)
    if text is None:
        return None, reason
    value = rec["correction"]
    if isinstance(value, dict):
        value = value.get("score")
    label, problem = parse_number(value)
    if problem:
        return None, f"bad_correction: a regression correction is a number, got {value!r}"
    return {"text": text, "label": label}, None


def detect(folder: Path) -> bool:
    """A sequence model with exactly one output trained for regression."""
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    archs = config.get("architectures") or [""]
    one_output = len(config.get("id2label") or {"0": ""}) == 1
    return (
        archs[0].endswith("SequenceClassification")
        and config.get("problem_type") == "regression"
        and one_output
    )


def engine(folder: Path, runtime: str = "torch", version: str | None = None):
    from verticalize.tasks.regression.serving import RegressionEngine

    return RegressionEngine(folder, runtime, version)


def predictor(folder: Path, batch_size: int = 32):
    from verticalize.tasks.regression.serving import Regressor

    return Regressor(folder, batch_size)


plugin = TaskPlugin(
    name="regression",
    description="one number per text (a rating, a score, a count)",
    default_base="all-MiniLM-L6-v2",
    # R² on one test set orders models as MSE does, and higher is better, as the export
    # gate, the registry's promotion margin and the default verdict assume
    main_metric="r2",
    default_stop_metric="r2",
    summary_metrics=list(METRICS),
    check_config=check_config,
    tune_metric=tune_metric,
    section=("regression", RegressionConfig),
    baselines=("tfidf_ridge",),
    methods=("full", "freeze", "layer_reduction", "lora"),
    augment=False,
    extras=(),
    target="label",
    target_detail="regression needs a number on every record (data.sources[].label)",
    parse_label=parse_label,
    labels_of=lambda labels, entity_types: [],  # a number, not classes
    min_classes=0,
    fingerprint_sections=lambda cfg: [settings_of(cfg).model_dump(mode="json")],
    train=train,
    masked_lm=True,
    workload=workload,
    evaluate=evaluate,
    score_predictions=score_predictions,
    card_usage=card_usage,
    card_words="text regression",
    pipeline_tag="text-classification",  # the Hub's tag for sequence models, one output too
    intended_use=lambda cfg, labels: f"predicting a number for each {cfg.domain} text",
    feedback_record=value_record,
    card_limitations=(
        "Predictions are not clipped: texts unlike the training data can get values outside "
        "the range seen in training.",
    ),
    detect=detect,
    engine=engine,
    routes=("classify",),
    predictor=predictor,
)
