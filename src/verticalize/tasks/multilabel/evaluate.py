"""Multi-label evaluation (E1, E2): the model at its saved thresholds and the one-vs-rest
TF-IDF + logistic-regression baseline, on the same test split; the margin over the strongest
baseline on micro F1, bootstrapped over texts; predictions.jsonl."""

from __future__ import annotations

import time

import numpy as np

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.evaluate.margin import count_margin
from verticalize.runfolder import RunFolder, write_jsonl
from verticalize.tasks.multilabel.encode import EncodedRecords, predict_proba
from verticalize.tasks.multilabel.labels import split_labels
from verticalize.tasks.multilabel.metrics import SUMMARY, indicator, multilabel_metrics
from verticalize.tasks.multilabel.thresholds import read_thresholds, thresholds_note

MAIN = "micro_f1"  # the plugin's main_metric
# the baseline's inverse regularization strengths, one chosen on the validation split
BASELINE_C = (0.25, 1.0, 4.0, 16.0)


def evaluate_multilabel(
    cfg: Config, folder: RunFolder, data_m: dict, train_m: dict, test: list[dict], out_dir
):
    """(report fields, inference seconds)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = data_m["labels"]
    model = AutoModelForSequenceClassification.from_pretrained(folder.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder.model_dir)
    thresholds = np.array(read_thresholds(folder.model_dir, labels), dtype=np.float32)
    test_set = EncodedRecords(test, tokenizer, labels, cfg.model.max_length)
    tick = time.perf_counter()
    probs = predict_proba(model, test_set, tokenizer.pad_token_id, cfg.eval.batch_size)
    infer_s = time.perf_counter() - tick
    pred = (probs >= thresholds).astype(np.int8)
    metrics = multilabel_metrics(test_set.targets, pred, labels)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)

    baselines, b_preds = {}, {}
    if "tfidf_lr" in cfg.eval.baselines:
        console.print("eval: fitting the one-vs-rest tfidf_lr baseline on the same splits")
        train = read_split(cfg, folder.root, "train")
        val = read_split(cfg, folder.root, "validation")
        b = tfidf_ovr_baseline(train, val, test, labels, cfg.eval.tfidf_analyzer)
        b_preds["tfidf_lr"] = b.pop("predictions")
        baselines["tfidf_lr"] = b
    write_jsonl(
        out_dir / "predictions.jsonl",
        (
            {
                "id": r["id"],
                "gold": split_labels(r["label"]),
                "pred": _names(pred[i], labels),
                "probs": {lab: round(float(p), 4) for lab, p in zip(labels, probs[i], strict=True)},
                **{name: _names(p[i], labels) for name, p in b_preds.items()},
            }
            for i, r in enumerate(test)
        ),
    )
    report = {
        "model": {
            "path": str(folder.model_dir),
            "metrics": metrics,
            "thresholds": {
                lab: round(float(t), 4) for lab, t in zip(labels, thresholds, strict=True)
            },
            "thresholds_note": thresholds_note(folder.model_dir),
        },
        "baselines": baselines,
        **count_margin(
            baselines,
            {name: text_counts(test_set.targets, p) for name, p in b_preds.items()},
            text_counts(test_set.targets, pred),
            MAIN,
            cfg.seed,
        ),
        "summary_metrics": SUMMARY,
        "labels": labels,
        "label_cardinality": {
            "test_gold": float(test_set.targets.sum(1).mean()) if len(test) else 0.0,
            "test_pred": float(pred.sum(1).mean()) if len(test) else 0.0,
        },
    }
    return report, infer_s


def text_counts(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per text (correct, predicted, gold) labels of 0/1 matrices [texts, labels]: rows whose
    sums give the micro scores."""
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    return np.stack([(t & p).sum(1), p.sum(1), t.sum(1)], axis=1).astype(np.int64)


def _names(row, labels: list[str]) -> list[str]:
    return [lab for lab, on in zip(labels, row, strict=True) if on]


def tfidf_ovr_baseline(
    train: list[dict], val: list[dict], test: list[dict], labels: list[str], analyzer: str
) -> dict:
    """One-vs-rest TF-IDF + logistic regression (class_weight balanced): C chosen by micro-F1
    on the validation split, then refit on train + validation and scored on `test`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    from verticalize.evaluate.baselines import tfidf_vectorizer

    def y(records: list[dict]) -> np.ndarray:
        return indicator([split_labels(r["label"]) for r in records], labels)

    def fit(records: list[dict], c: float):
        vec, resolved = tfidf_vectorizer(analyzer, [r["text"] for r in records])
        lr = LogisticRegression(C=c, class_weight="balanced", solver="liblinear", max_iter=1000)
        clf = make_pipeline(vec, OneVsRestClassifier(lr))
        return clf.fit([r["text"] for r in records], y(records)), resolved

    start = time.perf_counter()
    scores = {}
    if val:
        for c in BASELINE_C:
            clf, _ = fit(train, c)
            pred = clf.predict([r["text"] for r in val])
            scores[c] = multilabel_metrics(y(val), pred, labels)["micro_f1"]
    best_c = max(scores, key=scores.__getitem__) if scores else 1.0
    clf, resolved = fit(train + val, best_c)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = clf.predict([r["text"] for r in test]) if test else np.zeros((0, len(labels)))
    infer_s = time.perf_counter() - start
    metrics = multilabel_metrics(y(test), np.asarray(pred, dtype=np.int8), labels)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)
    return {
        "name": "tfidf_lr",
        "description": f"TF-IDF ({resolved} n-grams) + one-vs-rest logistic regression "
        f"(class_weight balanced, C={best_c:g} of {list(BASELINE_C)} by validation micro-F1), "
        "fit on train+validation",
        "metrics": metrics,
        "C": best_c,
        "validation_micro_f1_by_C": {str(c): round(s, 4) for c, s in scores.items()},
        "predictions": np.asarray(pred, dtype=np.int8),
        "fit_seconds": round(fit_s, 3),
    }
