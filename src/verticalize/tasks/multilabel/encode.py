"""Multi-label classification: tokenize records with 0/1 targets, batch them, and the
training loop's view of the task (sigmoid outputs, binary cross-entropy per label)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from verticalize.tasks.multilabel.labels import split_labels
from verticalize.tasks.multilabel.metrics import indicator, multilabel_metrics, tune_thresholds


class EncodedRecords(Dataset):
    """Tokenized records (unpadded) with their label sets as 0/1 rows; records without a
    "label" field (texts to predict) get an all-zero row."""

    def __init__(self, records: list[dict], tokenizer, labels: list[str], max_length: int):
        enc = tokenizer(
            [r["text"] for r in records], truncation=True, max_length=max_length, padding=False
        )
        self.targets = indicator([split_labels(r.get("label")) for r in records], labels)
        self.items = [
            {
                "input_ids": enc["input_ids"][i],
                "attention_mask": enc["attention_mask"][i],
                "labels": self.targets[i],
            }
            for i in range(len(records))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def make_collate(pad_token_id: int):
    """Right-pad a list of encoded items into tensors; labels as float 0/1 [batch, labels]."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(x["input_ids"]) for x in items)
        ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, x in enumerate(items):
            ids[i, : len(x["input_ids"])] = torch.tensor(x["input_ids"])
            mask[i, : len(x["attention_mask"])] = torch.tensor(x["attention_mask"])
        labels = torch.from_numpy(np.stack([x["labels"] for x in items])).float()
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


@torch.no_grad()
def predict_proba(model, items, pad_token_id: int, batch_size: int) -> np.ndarray:
    """Each label's probability (sigmoid) for every item, batched shortest first."""
    model.eval()
    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    collate = make_collate(pad_token_id)
    out = np.zeros((len(items), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([items[i] for i in idx])
        logits = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
        ).logits
        out[idx] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


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

    from verticalize.tasks.generation.lm import bucketed_order
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
