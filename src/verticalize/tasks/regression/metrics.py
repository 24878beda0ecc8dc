"""Regression metrics (E1 for a numeric target): MAE, RMSE, R² (scikit-learn), Spearman's
rank correlation (scipy)."""

from __future__ import annotations

import math

import numpy as np

# higher is better for r2 and spearman, lower for mae and rmse (verticalize.metrics)
METRICS = ("r2", "spearman", "mae", "rmse")


def regression_metrics(gold, pred) -> dict:
    """mae, rmse, r2 and spearman of predictions against gold values, plus n. Spearman is 0
    when either side is constant (no ranking to agree with); r2 needs two records."""
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    gold, pred = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    if len(gold) == 0:
        return {"n": 0, "mae": None, "rmse": None, "r2": None, "spearman": None}
    ranked = len(gold) > 1 and np.ptp(gold) > 0 and np.ptp(pred) > 0
    rho = spearmanr(gold, pred).statistic if ranked else math.nan
    return {
        "n": len(gold),
        "mae": float(mean_absolute_error(gold, pred)),
        "rmse": float(math.sqrt(mean_squared_error(gold, pred))),
        "r2": float(r2_score(gold, pred)) if len(gold) > 1 else 0.0,
        "spearman": 0.0 if math.isnan(rho) else float(rho),
    }
