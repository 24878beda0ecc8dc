"""Classification metrics (E1), computed with scikit-learn."""

from __future__ import annotations

from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    """accuracy; precision/recall/F1 macro, micro, weighted; per class; confusion matrix."""
    out: dict = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out |= {f"{avg}_precision": float(p), f"{avg}_recall": float(r), f"{avg}_f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    out["per_class"] = {
        lab: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, lab in enumerate(labels)
    }
    out["confusion_matrix"] = {
        "labels": labels,
        "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    return out


def metric_value(metrics: dict, name: str) -> float | None:
    """Look up `macro_f1` or a per-class `f1:<label>` in a metrics dict."""
    if name in metrics:
        return metrics[name]
    kind, _, label = name.partition(":")
    per_class = metrics.get("per_class") or metrics.get("per_type") or {}  # NER: per entity type
    return per_class.get(label, {}).get(kind)


def lower_is_better(name: str) -> bool:
    """Latency, time, loss, calibration and regression errors improve downwards; everything
    else upwards."""
    lower = ("ece", "mae", "rmse", "mse", "hamming_loss")
    return "latency" in name or name in lower or name.endswith(("loss", "_ms", "_s"))
