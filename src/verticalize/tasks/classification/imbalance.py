"""Class imbalance in training (M5): class weights, focal loss, a class-balanced sampler, and
per-class logit offsets tuned on validation and folded into the head's bias."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from verticalize.config import TrainConfig
from verticalize.console import console
from verticalize.errors import TrainingError
from verticalize.metrics import classification_metrics, lower_is_better, metric_value
from verticalize.tasks.classification.encode import predict_records

# logit offsets tried per class, and passes of coordinate ascent over the classes
OFFSET_GRID = np.round(np.arange(-3.0, 3.01, 0.25), 2)
PASSES = 3
# an offset must raise the validation metric by more than this to be kept (noise guard)
MIN_GAIN = 1e-4


def class_weight_vector(t: TrainConfig, train_labels: list[str], labels: list[str]):
    """Per-class loss weights as a float tensor, or None for train.class_weights: none.
    auto = n / (k * n_c) (scikit-learn's "balanced"); a class absent from training gets 1."""
    if t.class_weights == "none":
        return None
    if t.class_weights == "auto":
        counts = Counter(train_labels)
        n, k = len(train_labels), len(labels)
        return torch.tensor(
            [n / (k * counts[lab]) if counts[lab] else 1.0 for lab in labels], dtype=torch.float32
        )
    unknown = sorted(set(t.class_weights) - set(labels))
    if unknown:
        raise TrainingError(
            f"train.class_weights: {unknown[0]!r} is not a label of this data "
            f"({', '.join(labels)}). Fix: name labels from the data, or use auto."
        )
    return torch.tensor([float(t.class_weights.get(lab, 1.0)) for lab in labels])


def classification_loss(t: TrainConfig, weights: torch.Tensor | None) -> Callable:
    """(logits, targets) -> mean loss: label-smoothed cross-entropy, class-weighted (a
    weighted mean, as torch's cross_entropy takes it), times (1 - p_true)^gamma for focal."""
    smoothing = t.label_smoothing

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        w = weights.to(logits.device) if weights is not None else None
        if t.loss == "cross_entropy":
            return F.cross_entropy(logits, targets, weight=w, label_smoothing=smoothing)
        ce = F.cross_entropy(logits, targets, label_smoothing=smoothing, reduction="none")
        p_true = torch.softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        item_w = w[targets] if w is not None else torch.ones_like(ce)
        focal = (1.0 - p_true).pow(t.focal_gamma) * ce * item_w
        return focal.sum() / item_w.sum()

    return loss


def balanced_order(train_labels: list[str], seed: int) -> Callable[[int], list[int]]:
    """epoch -> as many indices as records, drawn with replacement so that every class is
    equally likely (each record of class c with probability 1 / (k * n_c)); seeded by
    (seed, epoch), so a resumed run draws the same batches."""
    counts = Counter(train_labels)
    p = torch.tensor([1.0 / (len(counts) * counts[y]) for y in train_labels], dtype=torch.double)

    def order(epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return torch.multinomial(p, len(train_labels), replacement=True, generator=g).tolist()

    return order


def tune_offsets(
    log_probs: np.ndarray, gold: list[str], labels: list[str], metric: str
) -> tuple[np.ndarray, float, float]:
    """Per-class offsets added to the log-probabilities (equivalently the logits) that
    maximise `metric` on these (validation) items: coordinate ascent over OFFSET_GRID, class
    by class, PASSES times, keeping a change only when it gains more than MIN_GAIN.
    Returns (offsets, metric before, metric after)."""

    def score(off: np.ndarray) -> float:
        pred = [labels[i] for i in (log_probs + off).argmax(axis=1)]
        return float(metric_value(classification_metrics(gold, pred, labels), metric))

    offsets = np.zeros(len(labels))
    before = best = score(offsets)
    for _ in range(PASSES):
        changed = False
        for c in range(len(labels)):
            trials = []
            for value in OFFSET_GRID:
                trial = offsets.copy()
                trial[c] = value
                trials.append((score(trial), -abs(value), value))
            s, _, value = max(trials)  # ties: the smallest offset
            if s > best + MIN_GAIN:
                offsets[c], best, changed = value, s, True
        if not changed:
            break
    return offsets, before, best


def head_bias(model) -> torch.nn.Parameter:
    """The bias of the classification head's output layer (num_labels outputs)."""
    n = model.config.num_labels
    found = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == n:
            found = (name, module)  # the last such layer is the output layer
    if found is None or found[1].bias is None:
        where = f"its output layer `{found[0]}` has none" if found else "no output layer found"
        raise TrainingError(
            f"train.tune_thresholds folds per-class offsets into the classification head's "
            f"bias, but {where}. Fix: use an encoder with a biased head (all-MiniLM-L6-v2, "
            "multilingual-e5-small), or set train.tune_thresholds: false."
        )
    return found[1].bias


def fold_offsets(model, offsets: np.ndarray) -> None:
    """Add `offsets` to the head's bias: argmax(logits + offsets) becomes the prediction."""
    bias = head_bias(model)
    with torch.no_grad():
        bias.add_(torch.as_tensor(offsets, dtype=bias.dtype, device=bias.device))


def tune_head(
    t: TrainConfig, max_length: int, model, tokenizer, val_records: list[dict], labels: list[str]
) -> dict:
    """train.tune_thresholds: per-class logit offsets that maximise the early-stopping
    metric on validation, folded into the head's bias; what the train manifest records."""
    metric = t.early_stopping.metric or "macro_f1"
    if lower_is_better(metric):  # e.g. loss: offsets are tuned for a score, not a loss
        metric = "macro_f1"
    probs, _ = predict_records(model, tokenizer, val_records, labels, max_length, t.eval_batch_size)
    gold = [r["label"] for r in val_records]
    offsets, before, after = tune_offsets(np.log(probs + 1e-12), gold, labels, metric)
    fold_offsets(model, offsets)
    console.print(
        f"train: per-class offsets tuned on validation: {metric} {before:.4f} -> {after:.4f} "
        f"({', '.join(f'{lab} {o:+.2f}' for lab, o in zip(labels, offsets, strict=True))})"
    )
    return {
        "offsets": {lab: float(o) for lab, o in zip(labels, offsets, strict=True)},
        "metric": metric,
        "validation_before": before,
        "validation_after": after,
    }
