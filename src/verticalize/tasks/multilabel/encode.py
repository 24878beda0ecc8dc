"""Multi-label classification: tokenize records with 0/1 targets, batch them, and the
training loop's view of the task (sigmoid outputs, binary cross-entropy per label)."""

from __future__ import annotations

import numpy as np
import torch

from verticalize.models import text_batches
from verticalize.models.text_batches import TextItems, batched_outputs, bucketed_order
from verticalize.tasks.multilabel.labels import split_labels
from verticalize.tasks.multilabel.metrics import indicator, multilabel_metrics, tune_thresholds


class EncodedRecords(TextItems):
    """Tokenized records (unpadded) with their label sets as 0/1 rows (`targets`); records
    without a "label" field (texts to predict) get an all-zero row."""

    def __init__(self, records: list[dict], tokenizer, labels: list[str], max_length: int):
        self.targets = indicator([split_labels(r.get("label")) for r in records], labels)
        super().__init__(records, tokenizer, max_length, self.targets)


def make_collate(pad_token_id: int):
    """Right-pad a list of encoded items into tensors; labels as float 0/1 [batch, labels]."""
    return text_batches.make_collate(
        pad_token_id, lambda ys: torch.from_numpy(np.stack(ys)).float()
    )


def predict_proba(model, items, pad_token_id: int, batch_size: int) -> np.ndarray:
    """Each label's probability (sigmoid) for every item, batched shortest first."""
    out = np.zeros((len(items), model.config.num_labels), dtype=np.float32)
    return batched_outputs(model, items, pad_token_id, batch_size, _sigmoid, out)


def _sigmoid(logits: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(logits.float()).cpu().numpy()


def multilabel_recipe(
    train_set: EncodedRecords,
    val_set: EncodedRecords,
    labels: list[str],
    pad_token_id: int,
    eval_batch_size: int,
    threshold: float,
    tune: bool,
    seed: int = 0,
    batch_size: int = 16,
):
    """Binary cross-entropy on every label; validation metrics at the thresholds the model
    would ship with (tuned on this validation split when `tune`), plus the validation loss.
    Batches hold texts of similar length (shuffled, sorted within windows): less padding."""
    import torch.nn.functional as F

    from verticalize.train.loop import Recipe

    lengths = [len(x["input_ids"]) for x in train_set.items]

    def order(epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return bucketed_order(lengths, batch_size, g)

    def loss(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        bce = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
        return bce, len(batch["labels"])

    def evaluate(model) -> dict:
        probs = predict_proba(model, val_set, pad_token_id, eval_batch_size)
        gold = val_set.targets
        cut = tune_thresholds(probs, gold, threshold) if tune else threshold
        m = multilabel_metrics(gold, (probs >= cut).astype(np.int8), labels)
        p = torch.from_numpy(probs).clamp(1e-7, 1 - 1e-7)
        m["loss"] = float(F.binary_cross_entropy(p, torch.from_numpy(gold).float()))
        return m

    return Recipe(
        items=train_set,
        collate=make_collate(pad_token_id),
        loss=loss,
        weight=lambda item: 1,
        evaluate=evaluate,
        order=order,
    )
