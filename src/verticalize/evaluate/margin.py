"""The model against its strongest baseline on the test split (E2, E7): which baseline is
strongest on the main metric, and the model's margin over it with a paired bootstrap CI and,
where items are right or wrong, McNemar's p-value.

delta is always model - baseline in the metric's own units, so for an error metric (lower is
better) a negative delta means the model is better."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from verticalize.evaluate.significance import mcnemar, paired_bootstrap
from verticalize.metrics import lower_is_better, metric_value


def strongest_baseline(baselines: dict, metric: str) -> str | None:
    """The name of the baseline with the best `metric` (first on ties), or None."""
    scored = [
        (name, v)
        for name, b in baselines.items()
        if (v := metric_value(b["metrics"], metric)) is not None
    ]
    if not scored:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(scored, key=lambda nv: nv[1])[0]


def margin_over(
    gold: Sequence,
    model_pred: Sequence,
    base_pred: Sequence,
    metric: str,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    correct: Callable[[object, object], bool] | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
) -> dict:
    """{metric, delta, ci_low, ci_high, p_value, test, bootstrap_p, n}: delta = model -
    baseline on the full test set, its paired-bootstrap 95% CI over test items; p_value is
    McNemar's on per-item correctness when `correct(gold, pred)` is given (test "mcnemar"),
    else the bootstrap p (test "bootstrap")."""
    boot = paired_bootstrap(
        gold, base_pred, model_pred, metric_fn, n_resamples=n_resamples, seed=seed
    )
    out = {
        "metric": metric,
        "delta": boot["delta"],
        "ci_low": boot["ci_low"],
        "ci_high": boot["ci_high"],
        "confidence": boot["confidence"],
        "p_value": boot["p_value"],
        "test": "bootstrap",
        "bootstrap_p": boot["p_value"],
        "n": len(gold),
    }
    if correct is not None:
        mc = mcnemar(
            [correct(g, p) for g, p in zip(gold, base_pred, strict=True)],
            [correct(g, p) for g, p in zip(gold, model_pred, strict=True)],
        )
        out |= {"p_value": mc["p_value"], "test": "mcnemar", "mcnemar": mc}
    return out


def strongest_and_margin(
    baselines: dict,
    baseline_preds: dict,
    gold: Sequence,
    model_pred: Sequence,
    metric: str,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    correct: Callable[[object, object], bool] | None = None,
    seed: int = 0,
) -> dict:
    """The report's `strongest_baseline: {name, metrics}` and `margin: {…}` (margin_over),
    or {} without baselines."""
    name = strongest_baseline(baselines, metric)
    if name is None or len(gold) < 2:
        return {}
    return {
        "strongest_baseline": {"name": name, "metrics": baselines[name]["metrics"]},
        "margin": margin_over(
            gold, model_pred, baseline_preds[name], metric, metric_fn, correct, seed
        ),
    }


def label_margin(
    baselines: dict,
    baseline_preds: dict,
    gold: list[str],
    model_pred: list[str],
    labels: list[str],
    metric: str,
    seed: int = 0,
) -> dict:
    """strongest_and_margin for one label per item (classification): labels become codes so
    each bootstrap resample is scored fast; McNemar on exact label matches."""
    every = list(dict.fromkeys([*labels, *gold, *model_pred, *sum(baseline_preds.values(), [])]))
    index = {lab: i for i, lab in enumerate(every)}

    def codes(values: list[str]) -> np.ndarray:
        return np.array([index[v] for v in values], dtype=np.int64)

    kind, _, label = metric.partition(":")
    key = f"{kind}:{labels.index(label)}" if label else metric
    return strongest_and_margin(
        baselines,
        {name: codes(p) for name, p in baseline_preds.items()},
        codes(gold),
        codes(model_pred),
        metric,
        code_metric(key, len(labels), len(every)),
        lambda g, p: g == p,
        seed,
    )


def micro_f1_of_counts(counts: np.ndarray) -> float:
    """Micro F1 of per-item (tp, n_pred, n_gold) rows: 2·Σtp / (Σn_pred + Σn_gold), which is
    2PR / (P + R) of the pooled precision and recall, and 0.0 where nothing was predicted or
    expected (as entity_scores and sklearn's zero_division=0)."""
    tp, n_pred, n_gold = np.asarray(counts, dtype=float).reshape(-1, 3).sum(axis=0)
    return float(2 * tp / (n_pred + n_gold)) if n_pred + n_gold else 0.0


def count_margin(
    baselines: dict,
    baseline_counts: dict,
    model_counts: np.ndarray,
    metric: str,
    seed: int = 0,
) -> dict:
    """strongest_and_margin when `metric` is a micro F1 pooled over items (NER sentences,
    multi-label texts): each system's "predictions" are its per-item (tp, n_pred, n_gold) rows
    [n_items, 3], so a bootstrap resample of items is a resample of rows, summed and scored by
    micro_f1_of_counts. Bootstrap p only: a micro F1 has no per-item right or wrong."""
    model_counts = np.asarray(model_counts, dtype=np.int64).reshape(-1, 3)
    return strongest_and_margin(
        baselines,
        {name: np.asarray(c, dtype=np.int64).reshape(-1, 3) for name, c in baseline_counts.items()},
        np.arange(len(model_counts)),
        model_counts,
        metric,
        lambda _items, counts: micro_f1_of_counts(counts),
        seed=seed,
    )


def code_metric(name: str, n_labels: int, n_codes: int):
    """`name` from code arrays (codes < n_labels: the label list; the rest: values outside it),
    like classification_metrics (sklearn, zero_division=0) but fast enough for many resamples."""
    kind, _, label = name.partition(":")

    def per_label(gold: np.ndarray, pred: np.ndarray):
        k = n_codes
        cm = np.bincount(gold * k + pred, minlength=k * k).reshape(k, k)[:n_labels, :n_labels]
        tp = np.diag(cm).astype(float)
        n_pred = np.bincount(pred, minlength=k)[:n_labels].astype(float)
        n_true = np.bincount(gold, minlength=k)[:n_labels].astype(float)
        return tp, n_pred, n_true

    def ratio(num, den):
        num, den = np.asarray(num, float), np.asarray(den, float)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def scores(tp, n_pred, n_true):
        return {
            "precision": ratio(tp, n_pred),
            "recall": ratio(tp, n_true),
            "f1": ratio(2 * tp, n_pred + n_true),
        }

    def fn(gold: np.ndarray, pred: np.ndarray) -> float:
        if name == "accuracy":
            return float(np.mean(gold == pred))
        tp, n_pred, n_true = per_label(gold, pred)
        if label:
            return float(scores(tp, n_pred, n_true)[kind][int(label)])
        avg, _, what = name.partition("_")
        if avg == "micro":
            return float(scores(tp.sum(), n_pred.sum(), n_true.sum())[what])
        s = scores(tp, n_pred, n_true)[what]
        if avg == "macro":
            return float(s.mean())
        return float(ratio((s * n_true).sum(), n_true.sum()))  # weighted

    return fn
