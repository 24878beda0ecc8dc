"""Multi-label metrics (E1) with scikit-learn, and per-label decision thresholds.

Labels are columns of 0/1 indicator matrices [texts, labels]. Micro scores pool every
(text, label) decision; macro scores average the labels; subset accuracy counts texts whose
whole label set is right; Hamming loss is the share of wrong (text, label) decisions.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

# what metrics() returns at the top level; per-label scores are f1:<label> etc.
METRICS = (
    "micro_f1",
    "macro_f1",
    "weighted_f1",
    "micro_precision",
    "micro_recall",
    "macro_precision",
    "macro_recall",
    "subset_accuracy",
    "hamming_loss",
)
SUMMARY = ["micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "micro_precision"]


def indicator(label_sets: list[list[str]], labels: list[str]) -> np.ndarray:
    """0/1 matrix [len(label_sets), len(labels)]; labels outside `labels` are ignored."""
    index = {lab: j for j, lab in enumerate(labels)}
    y = np.zeros((len(label_sets), len(labels)), dtype=np.int8)
    for i, labs in enumerate(label_sets):
        for lab in labs:
            if lab in index:
                y[i, index[lab]] = 1
    return y


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """The aggregate scores of METRICS and per_class {label: precision, recall, f1, support,
    predicted}."""
    out: dict = {}
    for avg in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out[f"{avg}_f1"] = float(f)
        if avg in ("micro", "macro"):
            out |= {f"{avg}_precision": float(p), f"{avg}_recall": float(r)}
    out["subset_accuracy"] = float(accuracy_score(y_true, y_pred))
    out["hamming_loss"] = float(hamming_loss(y_true, y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out["per_class"] = {
        lab: {
            "precision": float(p[j]),
            "recall": float(r[j]),
            "f1": float(f[j]),
            "support": int(s[j]),
            "predicted": int(y_pred[:, j].sum()),
        }
        for j, lab in enumerate(labels)
    }
    return out


# a label with fewer positive validation rows keeps the default threshold: tuned on two or
# three examples, a threshold swings to the grid's ends and floods the test split
MIN_POSITIVES = 5


def tune_thresholds(
    probs: np.ndarray,
    y_true: np.ndarray,
    default: float = 0.5,
    grid: int = 19,
    min_positives: int = MIN_POSITIVES,
) -> np.ndarray:
    """Per label, the threshold on a grid (0.05 … 0.95) with the best F1 on these rows; the
    one nearest `default` among ties; `default` for a label with fewer than `min_positives`
    positive rows."""
    candidates = np.linspace(0.05, 0.95, grid)
    out = np.full(probs.shape[1], default, dtype=np.float32)
    for j in range(probs.shape[1]):
        gold = y_true[:, j].astype(bool)
        if gold.sum() < max(min_positives, 1):
            continue
        pred = probs[:, j][:, None] >= candidates[None, :]  # [rows, candidates]
        tp = (pred & gold[:, None]).sum(0)
        f1 = 2 * tp / np.maximum(pred.sum(0) + gold.sum(), 1)
        best = np.flatnonzero(np.isclose(f1, f1.max()))
        out[j] = candidates[best[np.argmin(np.abs(candidates[best] - default))]]
    return out
