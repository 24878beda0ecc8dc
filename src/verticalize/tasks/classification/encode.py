"""Text classification: tokenize records, batch them, turn logits into labelled predictions."""

from __future__ import annotations

import numpy as np
import torch

from verticalize.models import text_batches
from verticalize.models.text_batches import TextItems, batched_outputs


class EncodedRecords(TextItems):
    """Tokenized records (unpadded), each with its class id; records without a "label"
    field (texts to predict) get label -100."""

    def __init__(self, records: list[dict], tokenizer, label2id: dict[str, int], max_length: int):
        ids = [label2id[r["label"]] if "label" in r else -100 for r in records]
        super().__init__(records, tokenizer, max_length, ids)


def make_collate(pad_token_id: int):
    """Right-pad a list of encoded items into tensors; class ids as long."""
    return text_batches.make_collate(pad_token_id, lambda ys: torch.tensor(ys, dtype=torch.long))


def predict_proba(model, dataset, pad_token_id: int, batch_size: int) -> np.ndarray:
    """Class probabilities for every item, batched by length (shortest first) for speed."""
    out = np.zeros((len(dataset), model.config.num_labels), dtype=np.float32)
    return batched_outputs(model, dataset, pad_token_id, batch_size, _softmax, out)


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def predict_records(
    model, tokenizer, records: list[dict], labels: list[str], max_length: int, batch_size: int
) -> tuple[np.ndarray, list[str]]:
    """Class probabilities and the predicted label of every record."""
    data = EncodedRecords(records, tokenizer, {lab: i for i, lab in enumerate(labels)}, max_length)
    with torch.inference_mode():
        probs = predict_proba(model, data, tokenizer.pad_token_id, batch_size)
    return probs, [labels[i] for i in probs.argmax(axis=1)]
