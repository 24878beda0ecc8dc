"""The training loop's view of masked-LM pre-training: tokenized texts, masks drawn as
transformers' DataCollatorForLanguageModeling draws them (15% of the tokens: 80% <mask>, 10%
a random token, 10% kept), and the loss at the masked positions only.

Masks are seeded by (seed, the batch's item indices), not by a running generator, so a
resumed run masks its remaining batches as an uninterrupted one does; the held-out batches
keep one fixed mask, so their loss before and after training compares like with like.
"""

from __future__ import annotations

import zlib

import torch

from verticalize.models.masked_lm import masked_lm_loss
from verticalize.train.loop import Recipe


def encode_texts(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """One item per text: its token ids (with the special tokens), cut at `max_length`."""
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": x, "index": i} for i, x in enumerate(ids)]


class MaskingCollate:
    """items → a padded batch whose input ids are masked and whose labels hold the original
    ids at the masked positions (-100 elsewhere)."""

    def __init__(self, tokenizer, mask_prob: float, seed: int):
        from transformers import DataCollatorForLanguageModeling

        self.collator = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=mask_prob, return_tensors="pt"
        )
        self.pad_id = tokenizer.pad_token_id
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.seed = seed

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(x["input_ids"]) for x in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        for row, x in enumerate(items):
            ids[row, : len(x["input_ids"])] = torch.tensor(x["input_ids"])
            attention[row, : len(x["input_ids"])] = 1
        keep = torch.isin(ids, self.special) | (attention == 0)  # never masked
        key = f"{self.seed}:" + ",".join(str(x["index"]) for x in items)
        self.collator.generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        masked, labels = self.collator.torch_mask_tokens(ids.clone(), keep)
        return {"input_ids": masked, "attention_mask": attention, "labels": labels}


@torch.no_grad()
def held_out_loss(model, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean cross-entropy over every masked token of the held-out batches."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        loss, n = masked_lm_loss(model, {k: v.to(device) for k, v in batch.items()}, "sum")
        total, count = total + float(loss), count + n
    return total / max(count, 1)


def masked_lm_recipe(
    items: list[dict], held_out: list[dict], tokenizer, mask_prob: float, seed: int, eval_bs: int
) -> Recipe:
    """The loop's recipe: masked-token loss on `items`; validation = the held-out texts'
    masked-token loss under fixed masks."""
    collate = MaskingCollate(tokenizer, mask_prob, seed)
    fixed = MaskingCollate(tokenizer, mask_prob, seed + 1)
    batches = [fixed(held_out[i : i + eval_bs]) for i in range(0, len(held_out), eval_bs)]
    return Recipe(
        items=items,
        collate=collate,
        loss=lambda model, batch: (masked_lm_loss(model, batch)[0], len(batch["input_ids"])),
        weight=lambda item: 1,
        evaluate=lambda model: {"loss": held_out_loss(model, batches)},
        label="continued_pretraining",
    )
