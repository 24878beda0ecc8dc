"""Regression: a sequence-classification model with one output, its numeric targets, the
training recipe (MSE or Huber on standardised targets) and batched predictions.

Training sees standardised targets, (t - mean) / std over the training split, where t is the
target or, for counts and prices (`regression.transform: log1p`), log1p of it; so the
learning rate means the same whatever the target's unit. When the model is saved the output
layer is rescaled by std and shifted by mean (`fold_scale`): the saved folder outputs t, the
original unit without a transform, for `predict`, the service and plain transformers alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from verticalize.errors import DataError
from verticalize.models import text_batches
from verticalize.models.text_batches import TextItems, batched_outputs

SCALE_KEY = "regression_target"  # config.json: how the targets were scaled in training


@dataclass(frozen=True)
class Scale:
    """How training sees a target y: t = log1p(y) with transform "log1p" (counts, prices),
    else t = y; then z = (t - mean) / std. Metrics are measured on t."""

    mean: float = 0.0
    std: float = 1.0
    transform: str = "none"

    @classmethod
    def fit(cls, values: list[float], standardize: bool = True, transform: str = "none") -> Scale:
        """The training targets' mean and standard deviation on t (std 1 for a constant)."""
        t = cls(transform=transform).forward(np.asarray(values, dtype=float))
        if not standardize or len(t) == 0:
            return cls(transform=transform)
        std = float(np.std(t))
        return cls(float(np.mean(t)), std if std > 0 else 1.0, transform)

    def forward(self, y):
        """y → t (floats or arrays)."""
        if self.transform != "log1p":
            return y
        if np.any(np.asarray(y) <= -1):
            low = float(np.nanmin(y))
            raise DataError(
                f"regression.transform: log1p needs targets above -1; one is {low:g}. Fix: "
                "set regression.transform: none, or shift the target so it is above -1."
            )
        return np.log1p(y)

    def inverse(self, t):
        """t → y."""
        return np.expm1(t) if self.transform == "log1p" else t

    def to_z(self, y: float) -> float:
        return (float(self.forward(y)) - self.mean) / self.std

    def from_z(self, z: np.ndarray) -> np.ndarray:
        """z → t."""
        return z * self.std + self.mean


def target_of(record: dict) -> float:
    """The record's numeric target (the data stage keeps it as text); nan without one."""
    label = record.get("label")
    return float(label) if label not in (None, "") else math.nan


class EncodedRecords(TextItems):
    """Tokenized records (unpadded) with standardised float targets ("labels")."""

    def __init__(self, records: list[dict], tokenizer, scale: Scale, max_length: int):
        targets = [scale.to_z(target_of(r)) for r in records]
        super().__init__(records, tokenizer, max_length, targets)


def make_collate(pad_token_id: int):
    """Right-pad encoded items into tensors; targets as float32."""
    return text_batches.make_collate(pad_token_id, lambda ys: torch.tensor(ys, dtype=torch.float32))


@torch.inference_mode()
def predict_outputs(model, items: list[dict], pad_token_id: int, batch_size: int) -> np.ndarray:
    """The model's single output for every item, batched by length (shortest first)."""
    out = np.zeros(len(items), dtype=np.float64)
    return batched_outputs(model, items, pad_token_id, batch_size, _first_output, out)


def _first_output(logits: torch.Tensor) -> np.ndarray:
    return logits[:, 0].float().cpu().numpy()


def regression_loss(kind: str, huber_delta: float):
    """(predictions, targets) -> mean loss: "mse" or "huber" (delta in target-z units)."""
    import torch.nn.functional as F

    if kind == "huber":
        return lambda pred, gold: F.huber_loss(pred, gold, delta=huber_delta)
    return F.mse_loss


def regression_recipe(
    train_set: EncodedRecords,
    val_set: EncodedRecords,
    scale: Scale,
    loss_kind: str,
    huber_delta: float,
    pad_token_id: int,
    eval_batch_size: int,
):
    """The training loop's view of the task: the loss on standardised targets; validation
    metrics (mae, rmse, r2, spearman) on t (the target, or its log1p), "loss" on z."""
    from verticalize.tasks.regression.metrics import regression_metrics
    from verticalize.train.loop import Recipe

    loss_fn = regression_loss(loss_kind, huber_delta)
    val_z = torch.tensor([x["labels"] for x in val_set.items], dtype=torch.float64)

    def loss(model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return loss_fn(out[:, 0].float(), batch["labels"]), len(batch["labels"])

    def evaluate(model) -> dict:
        z = predict_outputs(model, val_set.items, pad_token_id, eval_batch_size)
        m = regression_metrics(scale.from_z(val_z.numpy()), scale.from_z(z))
        m["loss"] = float(loss_fn(torch.from_numpy(z), val_z))
        return m

    return Recipe(
        items=train_set,
        collate=make_collate(pad_token_id),
        loss=loss,
        weight=lambda item: 1,
        evaluate=evaluate,
    )


def output_layer(model: nn.Module) -> nn.Linear:
    """The layer that produces the single output: the last one-output Linear (BERT's
    `classifier`, RoBERTa's `classifier.out_proj`, a decoder's `score`)."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    if not found:
        raise ValueError(f"{type(model).__name__} has no one-output linear layer to rescale")
    return found[-1]


@torch.no_grad()
def fold_scale(model: nn.Module, scale: Scale) -> None:
    """Make the model output t instead of z: weight × std, bias × std + mean. The scale and
    transform are recorded in config.json under `regression_target`; with log1p, y is
    expm1 of the output (`Regressor` applies it)."""
    layer = output_layer(model)
    layer.weight.mul_(scale.std)
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(1, dtype=layer.weight.dtype))
    layer.bias.mul_(scale.std).add_(scale.mean)
    recorded = {"mean": scale.mean, "std": scale.std, "transform": scale.transform}
    setattr(model.config, SCALE_KEY, recorded | {"in_output_layer": True})


def saved_scale(config) -> Scale:
    """The transform a saved model's output is in (its mean and std are already folded in)."""
    recorded = getattr(config, SCALE_KEY, None) or {}
    return Scale(transform=recorded.get("transform", "none"))
