"""Learning-rate schedules (T2): warmup ("cold start") then cosine (optionally with
restarts), linear, step decay or flat."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_hard_restarts_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from verticalize.config import TrainConfig


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig, total_steps: int) -> LambdaLR:
    warmup = int(cfg.warmup_ratio * total_steps)
    if cfg.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    if cfg.schedule == "cosine_restarts":
        return get_cosine_with_hard_restarts_schedule_with_warmup(
            optimizer, warmup, total_steps, num_cycles=cfg.cycles
        )
    if cfg.schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    if cfg.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)

    def step_decay(step: int) -> float:  # ×gamma every step_size steps after warmup
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return cfg.gamma ** ((step - warmup) // cfg.step_size)

    return LambdaLR(optimizer, step_decay)
