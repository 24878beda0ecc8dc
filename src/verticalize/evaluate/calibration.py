"""Calibration of a classifier's confidence (E6): reliability bins, ECE and MCE.

`confidence` is the probability the model gave its own prediction (the top class), so a bin's
accuracy is the share of its predictions that were right. A well-calibrated model is right 80%
of the time when it says 0.8; ECE is the count-weighted mean gap |accuracy - confidence| over the
bins, MCE the largest gap of a non-empty bin.

Bins are uniform on [0, 1] and bin exactly as sklearn.calibration.calibration_curve(strategy=
"uniform") does: a confidence on an inner edge goes to the lower bin, so bins are (low, high],
the first one [0, high].
"""

from __future__ import annotations

import numpy as np


def calibration(gold: list[str], pred: list[str], confidence: list[float], bins: int = 10) -> dict:
    """Reliability bins of the top-class confidence, with ECE and MCE.

    Returns {"bins": [{"low", "high", "count", "confidence", "accuracy"}], "ece", "mce", "n"};
    an empty bin has count 0 and confidence / accuracy None; ECE and MCE are 0.0 with no records.
    """
    if not len(gold) == len(pred) == len(confidence):
        raise ValueError(
            f"calibration: {len(gold)} gold, {len(pred)} predicted and "
            f"{len(confidence)} confidence values; they must be the same length"
        )
    if bins < 1:
        raise ValueError(f"calibration: bins must be at least 1, got {bins}")
    conf = np.asarray(confidence, dtype=float)
    if conf.size and (np.isnan(conf).any() or conf.min() < 0.0 or conf.max() > 1.0):
        raise ValueError("calibration: confidence values must lie in [0, 1]")
    correct = np.asarray([g == p for g, p in zip(gold, pred, strict=True)], dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], conf)  # the same binning as sklearn's calibration_curve
    count = np.bincount(ids, minlength=bins)
    conf_sum = np.bincount(ids, weights=conf, minlength=bins)
    right = np.bincount(ids, weights=correct, minlength=bins)
    n = int(conf.size)
    out_bins, ece, mce = [], 0.0, 0.0
    for i in range(bins):
        c = int(count[i])
        row = {"low": float(edges[i]), "high": float(edges[i + 1]), "count": c}
        if c:
            mean_conf, acc = float(conf_sum[i] / c), float(right[i] / c)
            gap = abs(acc - mean_conf)
            ece += c / n * gap
            mce = max(mce, gap)
            row |= {"confidence": mean_conf, "accuracy": acc}
        else:
            row |= {"confidence": None, "accuracy": None}
        out_bins.append(row)
    return {"bins": out_bins, "ece": float(ece), "mce": float(mce), "n": n}
