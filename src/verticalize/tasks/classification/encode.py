"""Text classification: tokenize records, batch them, turn logits into labelled predictions."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class EncodedRecords(Dataset):
    """Tokenized records (unpadded); padding happens per batch in `collate`. Records without
    a "label" field (texts to predict) get label -100."""

    def __init__(self, records: list[dict], tokenizer, label2id: dict[str, int], max_length: int):
        enc = tokenizer(
            [r["text"] for r in records], truncation=True, max_length=max_length, padding=False
        )
        self.items = [
            {
                "input_ids": enc["input_ids"][i],
                "attention_mask": enc["attention_mask"][i],
                "labels": label2id[r["label"]] if "label" in r else -100,
            }
            for i, r in enumerate(records)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def n_tokens(self) -> int:
        return sum(len(x["input_ids"]) for x in self.items)


def make_collate(pad_token_id: int):
    """Right-pad a list of encoded items into tensors."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(x["input_ids"]) for x in items)
        ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, x in enumerate(items):
            ids[i, : len(x["input_ids"])] = torch.tensor(x["input_ids"])
            mask[i, : len(x["attention_mask"])] = torch.tensor(x["attention_mask"])
        labels = torch.tensor([x["labels"] for x in items], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


@torch.no_grad()
def predict_proba(model, dataset: EncodedRecords, pad_token_id: int, batch_size: int) -> np.ndarray:
    """Class probabilities for every item, batched by length (shortest first) for speed."""
    model.eval()
    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i]["input_ids"]))
    collate = make_collate(pad_token_id)
    out = np.zeros((len(dataset), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([dataset[i] for i in idx])
        logits = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
        ).logits
        out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


def predict_records(
    model, tokenizer, records: list[dict], labels: list[str], max_length: int, batch_size: int
) -> tuple[np.ndarray, list[str]]:
    """Class probabilities and the predicted label of every record."""
    data = EncodedRecords(records, tokenizer, {lab: i for i, lab in enumerate(labels)}, max_length)
    with torch.inference_mode():
        probs = predict_proba(model, data, tokenizer.pad_token_id, batch_size)
    return probs, [labels[i] for i in probs.argmax(axis=1)]


def classification_recipe(
    train_set: EncodedRecords,
    val_set: EncodedRecords,
    val_labels: list[str],
    labels: list[str],
    pad_token_id: int,
    label_smoothing: float,
    eval_batch_size: int,
):
    """The training loop's view of the task: cross-entropy on labels, validation metrics."""
    import torch.nn.functional as F

    from verticalize.metrics import classification_metrics
    from verticalize.train.loop import Recipe

    def loss(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ce = F.cross_entropy(logits.float(), batch["labels"], label_smoothing=label_smoothing)
        return ce, len(batch["labels"])

    def evaluate(model) -> dict:
        probs = predict_proba(model, val_set, pad_token_id, eval_batch_size)
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
    )
