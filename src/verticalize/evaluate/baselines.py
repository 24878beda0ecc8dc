"""Baselines on the same splits (E2): TF-IDF + logistic regression, TF-IDF + LightGBM.

Both baselines share one TF-IDF feature builder (`tfidf_vectorizer`):

- ``word``: scikit-learn's word 1–2-grams (whitespace languages);
- ``jieba``: word 1–2-grams over jieba-segmented words (Chinese);
- ``char``: character 1–3-grams inside word boundaries (``char_wb``);
- ``auto``: ``jieba`` when the training texts are mostly Chinese, else ``word``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from verticalize.metrics import classification_metrics

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

ANALYZERS = ("auto", "word", "char", "jieba")
# share of CJK characters above which "auto" segments with jieba
CJK_THRESHOLD = 0.3
# texts sampled from the training set to decide "auto"
AUTO_SAMPLE = 500
# LightGBM bins every feature; this bound keeps a fit on ~1k documents within seconds
LIGHTGBM_MAX_FEATURES = 20_000

# "word/char n-grams" as before jieba existed, so report readers see the same wording
_DESCRIPTIONS = {
    "word": "word n-grams",
    "jieba": "jieba word n-grams",
    "char": "char n-grams",
}


def cjk_share(texts: list[str]) -> float:
    chars = sum(len(t) for t in texts) or 1
    return sum(len(_CJK.findall(t)) for t in texts) / chars


def resolve_analyzer(analyzer: str, texts: list[str]) -> str:
    """ "auto" → "jieba" when `texts` are mostly Chinese, else "word"; others pass through."""
    if analyzer not in ANALYZERS:
        raise ValueError(f"unknown TF-IDF analyzer {analyzer!r}; use one of {', '.join(ANALYZERS)}")
    if analyzer != "auto":
        return analyzer
    return "jieba" if cjk_share(texts[:AUTO_SAMPLE]) > CJK_THRESHOLD else "word"


@lru_cache(maxsize=1)
def _segmenter():
    # imported here so that English-only runs never load jieba's dictionary;
    # Segmenter quiets jieba's INFO logging and owns its own (deterministic) tokenizer
    from verticalize.data.segment import Segmenter

    return Segmenter()


def jieba_words(text: str) -> list[str]:
    """jieba's words of `text`, lower-cased, without whitespace and punctuation-only tokens."""
    return [w.lower() for w in _segmenter().cut(text) if any(c.isalnum() for c in w)]


def tfidf_vectorizer(
    analyzer: str,
    texts: list[str],
    *,
    max_features: int | None = None,
    dtype: type = np.float64,
) -> tuple[TfidfVectorizer, str]:
    """(unfitted vectorizer, resolved analyzer name) for `analyzer`; `texts` decide "auto"."""
    resolved = resolve_analyzer(analyzer, texts)
    common = {"sublinear_tf": True, "min_df": 1, "max_features": max_features, "dtype": dtype}
    if resolved == "char":
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), **common), resolved
    if resolved == "jieba":
        vec = TfidfVectorizer(
            tokenizer=jieba_words, token_pattern=None, lowercase=False, ngram_range=(1, 2), **common
        )
        return vec, resolved
    return TfidfVectorizer(ngram_range=(1, 2), **common), resolved


def _fit_and_score(
    name: str,
    description: str,
    clf,
    train: list[dict],
    test: list[dict],
    labels: list[str],
) -> dict:
    start = time.perf_counter()
    clf.fit([r["text"] for r in train], [r["label"] for r in train])
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = [str(p) for p in clf.predict([r["text"] for r in test])] if test else []
    infer_s = time.perf_counter() - start
    metrics = classification_metrics([r["label"] for r in test], pred, labels)
    metrics["latency_ms_per_example"] = 1000 * infer_s / max(len(test), 1)
    return {
        "name": name,
        "description": description,
        "metrics": metrics,
        "predictions": pred,
        "fit_seconds": round(fit_s, 3),
    }


def tfidf_lr(
    train: list[dict], test: list[dict], labels: list[str], analyzer: str = "auto"
) -> dict:
    """Fit on `train` records, score `test`; Chinese text gets jieba word 1–2-grams."""
    vec, resolved = tfidf_vectorizer(analyzer, [r["text"] for r in train])
    clf = make_pipeline(vec, LogisticRegression(max_iter=2000, C=1.0))
    description = (
        f"TF-IDF ({_DESCRIPTIONS[resolved]}) + logistic regression, fit on train+validation"
    )
    return _fit_and_score("tfidf_lr", description, clf, train, test, labels)


def lightgbm_baseline(
    train: list[dict],
    test: list[dict],
    labels: list[str],
    analyzer: str = "auto",
    seed: int = 0,
    n_jobs: int = 1,
) -> dict:
    """Gradient-boosted trees (LightGBM) on the same TF-IDF features, at most
    `LIGHTGBM_MAX_FEATURES` of them (sparse float32); deterministic for a given `seed`.

    One thread by default: on ~1k documents a second OpenMP thread saves nothing, and on a
    busy machine (other fits, a training run) its spin-waiting made a 1 s fit take 35 s."""
    import lightgbm

    vec, resolved = tfidf_vectorizer(
        analyzer,
        [r["text"] for r in train],
        max_features=LIGHTGBM_MAX_FEATURES,
        dtype=np.float32,
    )
    booster = lightgbm.LGBMClassifier(
        n_estimators=200,
        learning_rate=0.1,
        num_leaves=31,
        class_weight=None,
        random_state=seed,
        deterministic=True,
        force_col_wise=True,  # LightGBM asks for a fixed layout when deterministic=True
        n_jobs=n_jobs,
        verbose=-1,
    )
    clf = make_pipeline(vec, booster)
    description = (
        f"TF-IDF ({_DESCRIPTIONS[resolved]}, top {LIGHTGBM_MAX_FEATURES:,}) + LightGBM "
        "(200 trees), fit on train+validation"
    )
    return _fit_and_score("lightgbm", description, clf, train, test, labels)


BASELINES: dict[str, Callable[..., dict]] = {
    "tfidf_lr": tfidf_lr,
    "lightgbm": lightgbm_baseline,
}
