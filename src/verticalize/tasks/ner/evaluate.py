"""NER evaluation (E1): entity-level scores of model/ and the feature-CRF baseline on the test
split, on character spans (exact type, start and end), plus token accuracy over words; the
margin over the strongest baseline on entity_f1_micro, bootstrapped over sentences."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.tags import spans_to_word_tags
from verticalize.evaluate.margin import count_margin
from verticalize.runfolder import write_jsonl
from verticalize.tasks.ner.metrics import entity_scores, token_accuracy
from verticalize.tasks.ner.model import encode, entity_tuples, load_tagger, predict

MAIN = "entity_f1_micro"  # the plugin's main_metric
SUMMARY = ["entity_f1_micro", "entity_f1_macro", "entity_precision_micro", "entity_recall_micro"]
WORST = 15


def evaluate_ner(cfg: Config, model_dir: Path, test: list[dict], fit_on: list[dict], out_dir):
    """(report fields, inference seconds): model vs baselines, predictions.jsonl written."""
    model, tokenizer, spec = load_tagger(model_dir)
    tags, ner_cfg = spec["tags"], spec["config"]
    enc = encode(test, tokenizer, tags, ner_cfg.scheme, cfg.model.max_length)
    tick = time.perf_counter()
    pred = predict(model, enc, tags, ner_cfg.scheme, tokenizer.pad_token_id, cfg.eval.batch_size)
    infer_s = time.perf_counter() - tick
    gold = [entity_tuples(r.get("spans") or []) for r in test]
    model_ents = [entity_tuples(p) for p in pred.spans]
    metrics = entity_scores(gold, model_ents)
    gold_tags = [
        spans_to_word_tags(w, r.get("spans") or [], ner_cfg.scheme)[0]
        for w, r in zip(enc.words, test, strict=True)
    ]
    metrics["token_accuracy"] = token_accuracy(gold_tags, pred.tags)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)
    metrics["misaligned_spans"] = enc.misaligned_spans
    metrics["truncated_records"] = enc.truncated

    baselines, b_pred, b_counts = {}, None, {}
    if "feature_crf" in cfg.eval.baselines:
        from verticalize.tasks.ner.feature_crf import feature_crf

        console.print("eval: fitting the feature-based CRF baseline (sklearn-crfsuite)")
        b = feature_crf(fit_on, test, scheme=ner_cfg.scheme)
        b_pred = b.pop("predictions")
        b_ents = [entity_tuples(p) for p in b_pred]
        baselines["feature_crf"] = {"metrics": entity_scores(gold, b_ents), **b}
        b_counts["feature_crf"] = sentence_counts(gold, b_ents)
    rows = []
    for i, (r, p) in enumerate(zip(test, pred.spans, strict=True)):
        g = set(gold[i])
        errors = len(g ^ set(entity_tuples(p)))
        rows.append(
            {
                "id": r["id"],
                "text": r["text"],
                "gold": r.get("spans") or [],
                "pred": p,
                "errors": errors,
                **({"feature_crf": b_pred[i]} if b_pred else {}),
            }
        )
    write_jsonl(out_dir / "predictions.jsonl", rows)
    worst = sorted(rows, key=lambda x: (-x["errors"], len(x["text"])))[:WORST]
    report = {
        "model": {"path": str(model_dir), "metrics": metrics},
        "baselines": baselines,
        **count_margin(baselines, b_counts, sentence_counts(gold, model_ents), MAIN, cfg.seed),
        "summary_metrics": SUMMARY,
        "ner": {"scheme": ner_cfg.scheme, "head": model.head.describe(), "tags": tags},
        "worst": [
            {k: x[k] for k in ("id", "text", "gold", "pred", "errors")}
            for x in worst
            if x["errors"]
        ],
    }
    return report, infer_s


def sentence_counts(gold: list[list[tuple]], pred: list[list[tuple]]) -> np.ndarray:
    """Per sentence (correct, predicted, gold) entities, counted as entity_scores does
    (exact (type, start, end), duplicates once): rows whose sums give its micro scores."""
    rows = [
        (len(set(g) & set(p)), len(set(p)), len(set(g))) for g, p in zip(gold, pred, strict=True)
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)
