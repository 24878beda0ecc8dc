"""The training loop's view of text classification: its items, loss (class weights, focal),
sampler and validation metrics, as training and cross-validation use them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from verticalize.config import TrainConfig
from verticalize.metrics import classification_metrics
from verticalize.tasks.classification.encode import EncodedRecords, make_collate, predict_proba
from verticalize.tasks.classification.imbalance import (
    balanced_order,
    class_weight_vector,
    classification_loss,
)
from verticalize.train.loop import Recipe


def classification_recipe(
    train_set: EncodedRecords,
    val_set: EncodedRecords,
    val_labels: list[str],
    labels: list[str],
    pad_token_id: int,
    t: TrainConfig,
    seed: int,
) -> Recipe:
    """The training loop's view of the task: the loss of `t` (train config: label smoothing,
    class weights, focal), its sampler, and validation metrics."""
    train_labels = [labels[x["labels"]] for x in train_set.items]
    criterion = classification_loss(t, class_weight_vector(t, train_labels, labels))

    def loss(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return criterion(logits, batch["labels"]), len(batch["labels"])

    def evaluate(model) -> dict:
        probs = predict_proba(model, val_set, pad_token_id, t.eval_batch_size)
        preds = [labels[i] for i in probs.argmax(axis=1)]
        m = classification_metrics(val_labels, preds, labels)
        gold = torch.tensor([labels.index(y) for y in val_labels])
        m["loss"] = float(F.nll_loss(torch.log(torch.from_numpy(probs) + 1e-12), gold))
        return m

    return Recipe(
        items=train_set,
        collate=make_collate(pad_token_id),
        loss=loss,
        weight=lambda item: 1,
        evaluate=evaluate,
        order=balanced_order(train_labels, seed) if t.sampler == "balanced" else None,
    )
