"""Significance of a difference between two models on one test set (E7), computed with SciPy.

McNemar's test on per-item correctness (same numbers as statsmodels' `mcnemar`), and a paired
bootstrap confidence interval for the difference in any metric (`scipy.stats.bootstrap`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

EXACT_BELOW = 25  # b + c below this: exact binomial test (the usual rule of thumb)


def mcnemar(
    correct_a: Sequence[bool], correct_b: Sequence[bool], exact: bool | None = None
) -> dict:
    """McNemar's test: do A and B get different shares of the same items right?

    b = items A got right and B wrong, c = items A got wrong and B right. With `exact` (default:
    when b + c < 25) the two-sided binomial test of min(b, c) out of b + c at p = 0.5 (statistic
    min(b, c)); otherwise chi-square with continuity correction, (|b - c| - 1)^2 / (b + c), df 1.
    Equals statsmodels' `mcnemar(table, exact=..., correction=True)`; b + c == 0 gives p 1.0.
    """
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape or a.ndim != 1:
        raise ValueError(
            f"correct_a and correct_b must be 1-D and equally long: {a.shape} vs {bb.shape}"
        )
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    n = b + c
    if exact is None:
        exact = n < EXACT_BELOW
    if n == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "exact": bool(exact)}
    if exact:
        statistic = float(min(b, c))
        p_value = float(stats.binomtest(min(b, c), n, p=0.5, alternative="two-sided").pvalue)
    else:
        statistic = (abs(b - c) - 1) ** 2 / n
        p_value = float(stats.chi2.sf(statistic, 1))
    return {"b": b, "c": c, "statistic": statistic, "p_value": min(p_value, 1.0), "exact": exact}


def _rng_kwarg(seed: int) -> dict:
    """SciPy >= 1.15 calls the generator argument `rng`; older releases `random_state`."""
    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def paired_bootstrap(
    gold: list,
    pred_a: list,
    pred_b: list,
    metric: Callable[[list, list], float],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Paired bootstrap of delta = metric(gold, pred_b) - metric(gold, pred_a).

    Each resample draws test items with replacement, the same items for A and B
    (`scipy.stats.bootstrap(paired=True, method="percentile")` over item indices, generator
    `np.random.default_rng(seed)`), so the result is reproducible and equals SciPy's. `metric`
    receives the resampled gold and predictions as NumPy arrays.

    `delta` is on the full test set; `ci_low`/`ci_high` the percentile interval. `p_value` is
    the two-sided bootstrap p: the share of resampled deltas on the other side of 0 from
    `delta` (0 itself counts as the other side), times 2, capped at 1; delta == 0 gives 1.0.
    Its resolution is 2 / n_resamples: 0.0 means "below that", not "impossible".
    """
    g, pa, pb = np.asarray(gold), np.asarray(pred_a), np.asarray(pred_b)
    if not len(g) == len(pa) == len(pb):
        raise ValueError(f"gold, pred_a, pred_b differ in length: {len(g)}, {len(pa)}, {len(pb)}")
    if len(g) < 2:
        raise ValueError("paired_bootstrap needs at least 2 test items")

    def delta_of(idx: np.ndarray) -> float:
        return float(metric(g[idx], pb[idx]) - metric(g[idx], pa[idx]))

    idx = np.arange(len(g))
    res = stats.bootstrap(
        (idx,),
        delta_of,
        n_resamples=n_resamples,
        paired=True,
        vectorized=False,
        confidence_level=confidence,
        method="percentile",
        **_rng_kwarg(seed),
    )
    delta = delta_of(idx)
    dist = np.asarray(res.bootstrap_distribution)
    if delta > 0:
        p_value = min(1.0, 2 * float(np.mean(dist <= 0)))
    elif delta < 0:
        p_value = min(1.0, 2 * float(np.mean(dist >= 0)))
    else:
        p_value = 1.0
    return {
        "delta": delta,
        "ci_low": float(res.confidence_interval.low),
        "ci_high": float(res.confidence_interval.high),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "p_value": p_value,
    }
