"""Baselines on the same splits (E2): TF-IDF + logistic regression, TF-IDF + LightGBM.

Each gets the care the model gets: its class weights and regularisation are chosen on the
validation split (a small grid, `LR_GRID` / `LIGHTGBM_GRID`) for the task's main metric, and
the chosen values are reported; it is then refit on train + validation, as the model sees
both (training and early stopping), and scored on the test split.

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

from verticalize.metrics import classification_metrics, metric_value

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


# the grids each baseline's settings are chosen from on the validation split (E2: the same
# care as the model gets): class weights and the strength of regularisation
LR_GRID = {"C": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0], "class_weight": [None, "balanced"]}
LIGHTGBM_GRID = {"reg_lambda": [0.0, 1.0, 10.0], "class_weight": [None, "balanced"]}


def _grid(grid: dict[str, list]) -> list[dict]:
    combos = [{}]
    for key, values in grid.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def choose_on_validation(
    make: Callable[[dict], object],
    grid: dict[str, list],
    vectorizer,
    train: list[dict],
    validation: list[dict],
    labels: list[str],
    metric: str,
) -> tuple[dict, dict]:
    """(chosen settings, {"metric", "value", "tried"}): each combination of `grid` fit on
    `train` (features fit once) and scored on `validation` by `metric`; ties go to the
    earlier combination. No validation records: the grid's first values, unscored."""
    combos = _grid(grid)
    if not validation:
        return combos[0], {"metric": metric, "value": None, "tried": 0}
    x_train = vectorizer.fit_transform([r["text"] for r in train])
    x_val = vectorizer.transform([r["text"] for r in validation])
    y_train = [r["label"] for r in train]
    gold = [r["label"] for r in validation]
    best, best_value = combos[0], None
    for combo in combos:
        pred = [str(p) for p in make(combo).fit(x_train, y_train).predict(x_val)]
        value = metric_value(classification_metrics(gold, pred, labels), metric)
        if best_value is None or value > best_value:
            best, best_value = combo, value
    return best, {"metric": metric, "value": best_value, "tried": len(combos)}


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


def _settings(chosen: dict) -> str:
    return ", ".join(f"{k}={v if v is not None else 'none'}" for k, v in chosen.items())


def _select_refit_score(
    name: str,
    make: Callable[[dict], object],
    grid: dict[str, list],
    features: Callable[[], TfidfVectorizer],
    describe: Callable[[str], str],
    splits: tuple[list[dict], list[dict], list[dict]],
    labels: list[str],
    metric: str,
) -> dict:
    """Settings from `grid` chosen on validation (choose_on_validation), then a fresh
    `features()` + `make(chosen)` fit on train + validation and scored on test;
    `describe(settings text)` is the report's description."""
    train, validation, test = splits
    tick = time.perf_counter()
    chosen, chosen_by = choose_on_validation(
        make, grid, features(), train, validation, labels, metric
    )
    select_s = time.perf_counter() - tick
    clf = make_pipeline(features(), make(chosen))
    out = _fit_and_score(name, describe(_settings(chosen)), clf, train + validation, test, labels)
    return out | {"chosen": chosen, "chosen_by": chosen_by, "select_seconds": round(select_s, 3)}


def tfidf_lr(
    train: list[dict],
    validation: list[dict],
    test: list[dict],
    labels: list[str],
    analyzer: str = "auto",
    metric: str = "macro_f1",
    seed: int = 0,
) -> dict:
    """TF-IDF + logistic regression: C and class weights chosen on `validation` by `metric`
    (fit on `train`), then refit on train + validation and scored on `test`. Chinese text
    gets jieba word 1–2-grams."""
    texts = [r["text"] for r in train]
    resolved = resolve_analyzer(analyzer, texts)

    def make(p: dict) -> LogisticRegression:
        return LogisticRegression(max_iter=2000, C=p["C"], class_weight=p["class_weight"])

    return _select_refit_score(
        "tfidf_lr",
        make,
        LR_GRID,
        lambda: tfidf_vectorizer(resolved, texts)[0],
        lambda settings: (
            f"TF-IDF ({_DESCRIPTIONS[resolved]}) + logistic regression ({settings}, "
            "chosen on validation), fit on train+validation"
        ),
        (train, validation, test),
        labels,
        metric,
    )


def lightgbm_baseline(
    train: list[dict],
    validation: list[dict],
    test: list[dict],
    labels: list[str],
    analyzer: str = "auto",
    metric: str = "macro_f1",
    seed: int = 0,
    n_jobs: int = 1,
) -> dict:
    """Gradient-boosted trees (LightGBM) on the same TF-IDF features, at most
    `LIGHTGBM_MAX_FEATURES` of them (sparse float32): L2 regularisation and class weights
    chosen on `validation`, then refit on train + validation; deterministic for a `seed`.

    One thread by default: on ~1k documents a second OpenMP thread saves nothing, and on a
    busy machine (other fits, a training run) its spin-waiting made a 1 s fit take 35 s."""
    import lightgbm

    texts = [r["text"] for r in train]
    resolved = resolve_analyzer(analyzer, texts)

    def make(p: dict):
        return lightgbm.LGBMClassifier(
            n_estimators=200,
            learning_rate=0.1,
            num_leaves=31,
            reg_lambda=p["reg_lambda"],
            class_weight=p["class_weight"],
            random_state=seed,
            deterministic=True,
            force_col_wise=True,  # LightGBM asks for a fixed layout when deterministic=True
            n_jobs=n_jobs,
            verbose=-1,
        )

    return _select_refit_score(
        "lightgbm",
        make,
        LIGHTGBM_GRID,
        lambda: tfidf_vectorizer(
            resolved, texts, max_features=LIGHTGBM_MAX_FEATURES, dtype=np.float32
        )[0],
        lambda settings: (
            f"TF-IDF ({_DESCRIPTIONS[resolved]}, top {LIGHTGBM_MAX_FEATURES:,}) + LightGBM "
            f"(200 trees, {settings}, chosen on validation), fit on train+validation"
        ),
        (train, validation, test),
        labels,
        metric,
    )


BASELINES: dict[str, Callable[..., dict]] = {
    "tfidf_lr": tfidf_lr,
    "lightgbm": lightgbm_baseline,
}
