"""Baselines on the same splits (E2): TF-IDF + logistic regression."""

from __future__ import annotations

import re
import time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from verticalize.evaluate.metrics import classification_metrics

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def cjk_share(texts: list[str]) -> float:
    chars = sum(len(t) for t in texts) or 1
    return sum(len(_CJK.findall(t)) for t in texts) / chars


def tfidf_lr(
    train: list[dict], test: list[dict], labels: list[str], analyzer: str = "auto"
) -> dict:
    """Fit on `train` records, score `test`; Chinese text gets character 1–3-grams."""
    if analyzer == "auto":
        analyzer = "char" if cjk_share([r["text"] for r in train[:500]]) > 0.3 else "word"
    vec = (
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
        if analyzer == "char"
        else TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    )
    clf = make_pipeline(vec, LogisticRegression(max_iter=2000, C=1.0))
    start = time.perf_counter()
    clf.fit([r["text"] for r in train], [r["label"] for r in train])
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = list(clf.predict([r["text"] for r in test]))
    infer_s = time.perf_counter() - start
    metrics = classification_metrics([r["label"] for r in test], pred, labels)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)
    return {
        "name": "tfidf_lr",
        "description": f"TF-IDF ({analyzer} n-grams) + logistic regression, fit on train+validation",
        "metrics": metrics,
        "predictions": pred,
        "fit_seconds": round(fit_s, 3),
    }
