"""Wall time from a few real training steps on this machine (P3): the task's own batches,
loss and backward, AdamW with the loop's settings, timed after one warm-up step."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from verticalize.config import TrainConfig
from verticalize.models.memory import peak_rss_bytes
from verticalize.train.loop import enable_activation_checkpointing, epoch_order


@dataclass
class Calibration:
    steps: int  # timed optimizer steps
    seconds_per_step: float
    seconds_per_token: float  # per padded token of a training batch
    peak_rss_bytes: int  # this process's peak so far (the plan's own overhead included)

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "seconds_per_step": round(self.seconds_per_step, 4),
            "seconds_per_padded_token": self.seconds_per_token,
            "peak_rss_bytes": self.peak_rss_bytes,
        }


def epoch_batches(recipe, t: TrainConfig, seed: int) -> list[list[int]]:
    """The micro-batches of epoch 0 in the loop's order."""
    order = recipe.order(0) if recipe.order is not None else epoch_order(len(recipe.items), seed, 0)
    return [order[i : i + t.batch_size] for i in range(0, len(order), t.batch_size)]


def padded_tokens(recipe, batches: list[list[int]]) -> int:
    """Tokens the model processes, padding included (a batch is as wide as its longest)."""
    items = recipe.items
    return sum(len(b) * max(len(items[i]["input_ids"]) for i in b) for b in batches if b)


def calibrate(model, recipe, t: TrainConfig, seed: int, steps: int = 3) -> Calibration:
    """Time `steps` optimizer steps (after one warm-up step) of `model` on the first batches
    of epoch 0; the model's weights change, so pass a model nobody keeps."""
    batches = epoch_batches(recipe, t, seed)
    per_step = t.grad_accum_steps
    groups = [batches[i : i + per_step] for i in range(0, len(batches), per_step)]
    groups = (groups * math.ceil((steps + 1) / max(len(groups), 1)))[: steps + 1]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    if t.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    timed, tokens = 0.0, 0
    for k, group in enumerate(groups):
        tick = time.perf_counter()
        for micro in group:
            batch = recipe.collate([recipe.items[i] for i in micro])
            loss, _ = recipe.loss(model, batch)
            (loss / len(group)).backward()
        if t.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, t.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if k > 0:  # the first step pays for lazy initialisation
            timed += time.perf_counter() - tick
            tokens += padded_tokens(recipe, group)
    del optimizer
    n = max(len(groups) - 1, 1)
    return Calibration(
        steps=len(groups) - 1,
        seconds_per_step=timed / n,
        seconds_per_token=timed / max(tokens, 1),
        peak_rss_bytes=peak_rss_bytes(),
    )
