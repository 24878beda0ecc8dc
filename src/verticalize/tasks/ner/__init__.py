"""Named-entity recognition: character spans [start, end, TYPE] per record (M2).

The plugin: words → first sub-tokens → a tagging head (`model`, `heads`, `crf`); training in
`train`; entity-level evaluation against the feature-CRF baseline in `evaluate`; the report
page in `report`; the serving engine in `serving`.
"""

from __future__ import annotations

from pathlib import Path

from verticalize.config import Config, MetricError
from verticalize.export.card import usage_lines
from verticalize.plugins import TaskPlugin
from verticalize.serve.feedback import spans_record
from verticalize.tasks.ner.report import render_ner_html

NER_METRICS = (
    "entity_f1_micro",
    "entity_f1_macro",
    "entity_precision_micro",
    "entity_recall_micro",
    "token_accuracy",
    "loss",
    "latency_ms_per_example",
)
SUMMARY = ["entity_f1_micro", "entity_f1_macro", "entity_precision_micro", "entity_recall_micro"]


def _known(metric: str) -> bool:
    kind, _, label = metric.partition(":")
    return metric in NER_METRICS or (kind in ("f1", "precision", "recall") and bool(label))


def check_config(cfg: Config) -> None:
    named = [(("eval", "targets", i, "metric"), t.metric) for i, t in enumerate(cfg.eval.targets)]
    named.append((("train", "early_stopping", "metric"), cfg.train.early_stopping.metric))
    for loc, metric in named:
        if not _known(metric):
            raise MetricError(loc, metric, list(NER_METRICS) + ["f1:<TYPE>"])


def tune_metric(metric: str, cfg: Config) -> tuple[str, str | None]:
    if _known(metric):
        return metric, None
    known = [m for m in NER_METRICS if "latency" not in m] + ["f1:<TYPE>"]
    return metric, f"unknown metric {metric!r}. Fix: use one of: {', '.join(known)}."


def train(cfg, folder, out_dir, labels, tracker=None, check=None) -> dict:
    from verticalize.tasks.ner.train import train_ner

    return train_ner(cfg, folder, out_dir, labels, tracker, check)


def workload(cfg: Config, train_records, val_records, types):
    from verticalize.models.adapt import adapt
    from verticalize.plan.workload import single_pass
    from verticalize.tasks.ner.train import ner_setup

    model, _, _, _, recipe = ner_setup(cfg, train_records, val_records, types)

    def adapter(m, mc):
        m.backbone = adapt(m.backbone, mc, "TOKEN_CLS", cfg.model.base)
        return m

    return single_pass(cfg, model, recipe, train_records, val_records, adapter)


def evaluate(cfg, folder, data_m, train_m, test, out_dir):
    from verticalize.data.outputs import read_split
    from verticalize.tasks.ner.evaluate import evaluate_ner

    fit_on = read_split(cfg, folder.root, "train") + read_split(cfg, folder.root, "validation")
    return evaluate_ner(cfg, folder.model_dir, test, fit_on, out_dir)


def score_predictions(cfg: Config, rows: list[dict], data_m: dict) -> dict:
    """Entity scores on some rows of predictions.jsonl (token accuracy needs the words)."""
    from verticalize.tasks.ner.metrics import entity_scores

    def tuples(spans: list) -> list[tuple]:
        return [(s[2], s[0], s[1]) for s in spans]  # as model.entity_tuples, without torch

    return entity_scores([tuples(r["gold"]) for r in rows], [tuples(r["pred"]) for r in rows])


def export_labels(cfg: Config, model_out: Path, data_m: dict) -> list[str]:
    """The entity types."""
    return list(data_m.get("labels") or [])


def card_usage(cfg: Config, info: dict) -> list[str]:
    python = [
        "from verticalize import api",
        'api.predict("path/to/this/folder", ["a text"])  # entities with offsets',
    ]
    return usage_lines(info, "ner", python)


def detect(folder: Path) -> bool:
    from verticalize.tasks.ner.model import SPEC_FILE

    return (folder / SPEC_FILE).is_file()


def engine(folder: Path, runtime: str = "torch", version: str | None = None):
    from verticalize.tasks.ner.serving import NerEngine

    return NerEngine(folder, runtime, version)


def predictor(folder: Path, batch_size: int = 32):
    from verticalize.tasks.ner.model import Tagger

    tagger = Tagger(folder, batch_size)
    return lambda texts: [{"entities": ents} for ents in tagger(texts)]


plugin = TaskPlugin(
    name="ner",
    description="entity spans in text (drugs, people, places)",
    default_base="all-MiniLM-L6-v2",
    main_metric="entity_f1_micro",
    default_stop_metric="entity_f1_micro",
    summary_metrics=SUMMARY,
    check_config=check_config,
    tune_metric=tune_metric,
    section=("ner", type(Config.model_fields["ner"].default)),
    baselines=("feature_crf",),
    methods=("full", "freeze", "layer_reduction", "lora"),
    augment=True,
    extras=(),
    target="spans",
    target_detail="ner needs [[start, end, TYPE], …] on every record (an empty list is fine); "
    "point data.sources[].spans at the field, or use a conll/doccano/labelstudio source",
    labels_of=lambda labels, entity_types: sorted(entity_types),
    fingerprint_sections=lambda cfg: [cfg.ner.model_dump(mode="json")],
    train=train,
    masked_lm=True,
    workload=workload,
    evaluate=evaluate,
    score_predictions=score_predictions,
    render_report=render_ner_html,
    export_labels=export_labels,
    card_usage=card_usage,
    detect=detect,
    engine=engine,
    routes=("ner",),
    predictor=predictor,
    card_words="named-entity recognition",
    pipeline_tag="token-classification",
    intended_use=lambda cfg, labels: (
        f"finding {', '.join(labels) or 'entity'} spans in {cfg.domain} texts"
    ),
    accuracy_metric="entity_f1_micro",
    feedback_record=spans_record,
)
