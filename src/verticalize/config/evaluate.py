"""The `eval:` section (targets, baselines, cross-validation, robustness, adversarial
attacks) and the metric-name checks the task plugins share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from verticalize.config.base import Section


class Target(Section):
    """An absolute target (`target: 0.8`) or a relative one: `beat: strongest_baseline`
    (or a baseline's name) `by: 0.02`, judged on the test split."""

    metric: str
    target: float | None = Field(None, description="The value to reach.")
    beat: str | None = Field(
        None,
        description="strongest_baseline, or a baseline of eval.baselines: the model must beat "
        "its value of `metric` by `by`.",
    )
    by: float = Field(0.0, ge=0.0, description="beat: the margin required.")
    direction: Literal["max", "min"] | None = Field(
        None, description="max = higher is better; default: min for latency/loss, else max."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        if (self.target is None) == (self.beat is None):
            raise ValueError(
                "a target needs either `target: <value>` or `beat: strongest_baseline` (with "
                "an optional `by:`), not both and not neither"
            )
        return self


NOISE_KINDS = ("insert", "delete", "replace", "swap", "homophone", "similar_shape", "traditional")


class RobustnessConfig(Section):
    enabled: bool = False
    rate: float = Field(0.1, gt=0.0, le=1.0, description="Share of characters edited.")
    kinds: list[Literal[NOISE_KINDS]] | None = Field(
        None,
        description="Default: insert, delete, replace, swap; plus homophone, similar_shape, "
        "traditional for Chinese text.",
    )


class FgsmConfig(Section):
    enabled: bool = False
    epsilon: float = Field(
        0.05, ge=0.0, description="Step on the input embeddings, in units of their RMS value."
    )


class SubstitutionConfig(Section):
    enabled: bool = False
    max_words: int = Field(3, ge=1, description="Words an attack may replace per text.")
    candidates: int = Field(8, ge=1, description="Embedding neighbours tried per word.")
    n: int = Field(100, ge=1, description="Correctly classified test texts attacked.")
    rank: Literal["gradient", "deletion"] = Field(
        "gradient",
        description="Word importance: gradient x input (one backward pass a text) or the "
        "probability drop when the word is deleted (TextFooler; one forward a word).",
    )


class AdversarialConfig(Section):
    fgsm: FgsmConfig = FgsmConfig()
    substitution: SubstitutionConfig = SubstitutionConfig()


class CvConfig(Section):
    enabled: bool = False
    epochs: int | None = Field(
        None, ge=1, description="Epochs per fold; default: train.epochs (fewer = faster)."
    )
    max_length: int | None = Field(
        None, gt=0, description="Tokens per text in the folds; default: model.max_length."
    )
    lr: float | None = Field(
        None, gt=0, description="Learning rate in the folds; default: train.lr."
    )
    folds: int | None = Field(
        None,
        ge=2,
        description="Run only the first n of the data's data.split.folds folds (each still "
        "holds out one fold and trains on the others); default: all of them.",
    )
    patience: int | None = Field(
        None,
        ge=1,
        description="Early stopping in each fold: evaluations on the fold's validation slice "
        "without improvement before the fold stops; default: train.early_stopping.patience.",
    )


class EvalConfig(Section):
    targets: list[Target] = []
    baselines: list[str] | None = Field(
        None,
        description="The task's own baselines (checked against the task plugin). Default: "
        "tfidf_lr + lightgbm (classification), feature_crf (ner), none (generation), "
        "tfidf_lr (multilabel), tfidf_ridge (regression), bm25 + base_encoder (embedding).",
    )
    tfidf_analyzer: Literal["auto", "word", "char", "jieba"] = Field(
        "auto",
        description="auto = jieba words for Chinese, words otherwise; char = character 1-3-grams.",
    )
    cv: CvConfig = Field(
        CvConfig(), description="k-fold cross-validation over data.split.folds (classification)."
    )
    robustness: RobustnessConfig = RobustnessConfig()
    adversarial: AdversarialConfig = AdversarialConfig()
    batch_size: int = Field(64, ge=1)


AGGREGATE_METRICS = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "micro_f1",
    "macro_precision",
    "macro_recall",
    "weighted_precision",
    "weighted_recall",
)
LATENCY_METRICS = ("latency_ms_per_example", "ece")


class BaselineError(ValueError):
    def __init__(self, loc: tuple, value: str, task: str, allowed: tuple[str, ...]):
        self.loc, self.value = loc, value
        self.fix = f"use {list(allowed) or 'none'} for task: {task}, or remove eval.baselines"
        super().__init__(f"baseline {value!r} does not apply to task: {task}")


class LabelError(ValueError):
    def __init__(self, loc: tuple, value: str, labels: list[str]):
        self.loc, self.value, self.labels = loc, value, labels
        super().__init__(f"label {value!r} is not in the label set {labels}")


class MetricError(ValueError):
    def __init__(self, loc: tuple, value: str, known: list[str]):
        self.loc, self.value, self.known = loc, value, known
        super().__init__(f"unknown metric {value!r}")


def check_metric_name(name: str, labels: list[str] | None, loc: tuple) -> None:
    """Metric names are aggregate names or per-class `f1:<label>` / `precision:<label>` …"""
    if name in AGGREGATE_METRICS or name in LATENCY_METRICS:
        return
    kind, _, label = name.partition(":")
    if kind in ("f1", "precision", "recall") and label:
        if labels is not None and label not in labels:
            raise LabelError(loc, label, labels)
        return
    raise MetricError(loc, name, list(AGGREGATE_METRICS + LATENCY_METRICS) + ["f1:<label>"])
