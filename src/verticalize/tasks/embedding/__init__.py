"""Retrieval embeddings: a query and the passage that answers it, optionally a hard
negative; an encoder trained so the two land close together (M2, M5).

The plugin: the positive passage read at ingest through the `embedding:` section's field
names, its key as the record's label (`pairs`); a head-less encoder, mean-pooled and
normalised, trained with the multiple-negatives ranking loss (`model`, `train`); test queries
ranked against the whole corpus, recall@k, MRR@10, nDCG@10 against BM25 and the untuned base
encoder (`metrics`, `bm25`, `evaluate`, `report`); vectors from `predict` and /v1/embeddings
(`serving`). Its YAML section is `embedding:` (`settings`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from verticalize.config import BaselineError, Config, MetricError
from verticalize.export.card import usage_lines
from verticalize.plugins import TaskPlugin
from verticalize.tasks.embedding.metrics import METRICS
from verticalize.tasks.embedding.pairs import corpus_digests, parse_pair
from verticalize.tasks.embedding.settings import SETTINGS_KEY, EmbeddingConfig, settings_of

STOP_METRICS = (*METRICS, "loss")  # what validation measures
TARGET_METRICS = (*METRICS, "latency_ms_per_example")  # what eval measures on test


class FieldError(BaselineError):
    """A field this task cannot take; the config's error formatter shows loc, value, fix."""

    def __init__(self, loc: tuple, value, message: str, fix: str):
        ValueError.__init__(self, message)
        self.loc, self.value, self.fix = loc, value, fix


def check_config(cfg: Config) -> None:
    """Pairs, not classes: no label set, bins or fixed labels; the passages' fields reach the
    records; metric names this task measures."""
    d, s = cfg.data, settings_of(cfg)
    for field in ("label_bins", "labels"):
        if getattr(d, field):
            raise FieldError(
                ("data", field),
                getattr(d, field),
                "a retrieval record's target is its passage (embedding.positive), not a class",
                f"remove data.{field}",
            )
    if s.negative == s.positive:
        raise FieldError(
            ("embedding", "negative"),
            s.negative,
            "the hard negative and the positive passage are read from the same field",
            "point embedding.negative at another field, or set it to null",
        )
    for i, src in enumerate(d.sources):
        _check_source(i, src, s)
    if cfg.model.freeze.head_only:
        raise FieldError(
            ("model", "freeze", "head_only"),
            True,
            "an embedding model has no head: head_only would train nothing",
            "set model.freeze.head_only: false and freeze layers instead",
        )
    for i, t in enumerate(cfg.eval.targets):
        if t.metric not in TARGET_METRICS:
            raise MetricError(("eval", "targets", i, "metric"), t.metric, list(TARGET_METRICS))
    stop = cfg.train.early_stopping.metric
    if stop not in STOP_METRICS:
        raise MetricError(("train", "early_stopping", "metric"), stop, list(STOP_METRICS))


def _check_source(i: int, src, s: EmbeddingConfig) -> None:
    loc = ("data", "sources", i)
    if src.label_value is not None:
        raise FieldError(
            (*loc, "label_value"),
            src.label_value,
            "a fixed label would give every query the same passage",
            f"remove label_value; each row's passage is read from its {s.positive!r} field",
        )
    passages = [f for f in (s.positive, s.negative) if f]
    if src.label in passages:  # the data stage keeps that field as the label, not as text
        raise FieldError(
            (*loc, "label"),
            src.label,
            f"the passage field {src.label!r} is also this source's label field",
            "set label: to a field the rows do not have (e.g. label: unused)",
        )
    if src.fields is not None and (missing := [f for f in passages if f not in src.fields]):
        raise FieldError(
            (*loc, "fields"),
            src.fields,
            f"the records would not keep the passage field(s) {missing}",
            f"add {missing} to fields, or remove fields",
        )


def tune_metric(metric: str, cfg: Config) -> tuple[str, str | None]:
    if metric in STOP_METRICS:
        return metric, None
    return metric, f"unknown metric {metric!r}. Fix: use one of: {', '.join(STOP_METRICS)}."


def train(cfg, folder, out_dir, labels, tracker=None, check=None) -> dict:
    from verticalize.tasks.embedding.train import train_embedding

    return train_embedding(cfg, folder, out_dir, tracker, check)


def workload(cfg: Config, train_records, val_records, labels):
    from verticalize.plan.workload import single_pass
    from verticalize.tasks.embedding.train import adapt_encoder, embedding_setup

    model, _, _, recipe = embedding_setup(cfg, train_records, val_records)
    work = single_pass(cfg, model, recipe, train_records, val_records, adapter=adapt_encoder)
    return replace(work, freeze_head=False)  # no head: `freeze` freezes layers


def evaluate(cfg, folder, data_m, train_m, test, out_dir):
    from verticalize.tasks.embedding.evaluate import evaluate_embedding

    return evaluate_embedding(cfg, folder, data_m, train_m, test, out_dir)


def render_report(report: dict, loss_chart: str) -> str:
    from verticalize.tasks.embedding.report import render_embedding

    return render_embedding(report, loss_chart)


def card_usage(cfg: Config, info: dict) -> list[str]:
    s = settings_of(cfg)
    python = [
        "from verticalize.tasks.embedding.serving import Embedder",
        f'query = Embedder("path/to/this/folder").encode([{s.query_prefix + "a question"!r}])',
        "# mean-pooled, L2-normalised: cosine similarity = query @ passages.T",
    ]
    lines = usage_lines(info, "embeddings", python)
    if s.query_prefix or s.passage_prefix:
        lines += [
            f"Trained with prefixes: put {s.query_prefix!r} before queries and "
            f"{s.passage_prefix!r} before passages (config.json `{SETTINGS_KEY}`); the "
            "service embeds texts as given.",
            "",
        ]
    return lines


def detect(folder: Path) -> bool:
    """A head-less encoder whose config.json says how it pools (written by training)."""
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(config.get(SETTINGS_KEY), dict)


def engine(folder: Path, runtime: str = "torch", version: str | None = None):
    from verticalize.tasks.embedding.serving import EmbeddingEngine

    return EmbeddingEngine(folder, runtime, version)


def predictor(folder: Path, batch_size: int = 32):
    from verticalize.tasks.embedding.serving import Embedder

    return Embedder(folder, batch_size)


plugin = TaskPlugin(
    name="embedding",
    description="retrieval embeddings: queries close to the passages that answer them",
    default_base="all-MiniLM-L6-v2",
    # MRR@10 rewards the rank of the right passage, not just its presence in the top 10
    main_metric="mrr_at_10",
    default_stop_metric="mrr_at_10",
    summary_metrics=list(METRICS),
    check_config=check_config,
    tune_metric=tune_metric,
    section=("embedding", EmbeddingConfig),
    baselines=("bm25", "base_encoder"),
    methods=("full", "freeze", "layer_reduction", "lora"),
    augment=False,
    extras=(),
    target="label",
    target_detail="a retrieval record needs its positive passage (embedding.positive)",
    parse_label=parse_pair,
    labels_of=lambda labels, entity_types: [],  # passages, not classes
    min_classes=0,
    data_sections=lambda cfg: [
        {"positive": settings_of(cfg).positive, "negative": settings_of(cfg).negative}
    ],
    stratify_key=lambda label: None,  # every passage is its own label: nothing to balance
    split_group=lambda record: record.get("label"),  # all queries of a passage, one split
    fingerprint_sections=lambda cfg: [settings_of(cfg).model_dump(mode="json", exclude={"corpus"})],
    train=train,
    masked_lm=True,
    workload=workload,
    evaluate=evaluate,
    eval_sections=lambda cfg: [
        [src.model_dump(mode="json") for src in settings_of(cfg).corpus],
        corpus_digests(cfg),
    ],
    render_report=render_report,
    card_usage=card_usage,
    card_words="retrieval embedding",
    pipeline_tag="sentence-similarity",
    intended_use=lambda cfg, labels: (
        f"finding the {cfg.domain} passages that answer a query (semantic search, "
        "retrieval-augmented generation)"
    ),
    card_limitations=(
        "Scores are cosine similarities of mean-pooled vectors: they rank passages for one "
        "query but are not probabilities, and no fixed threshold separates relevant passages.",
    ),
    detect=detect,
    engine=engine,
    routes=("embeddings",),
    predictor=predictor,
)
