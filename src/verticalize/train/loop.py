"""The training recipe: one explicit loop on Accelerate (T1–T4), shared by every task.

setup → for each epoch, for each optimizer step: accumulate micro-batches, clip, step,
schedule → evaluate, early-stop, checkpoint → restore the best weights.
A task hands the loop a `Recipe`: its items, how to batch them, its loss and its
validation. The data order of epoch e is seeded by (seed, e), so a resumed run sees the
same batches as an uninterrupted one; RNG states travel in the checkpoint.
"""

from __future__ import annotations

import ctypes
import gc
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path

import psutil
import torch
from accelerate.utils import broadcast_object_list

from verticalize.config import TrainConfig
from verticalize.console import progress_bar
from verticalize.metrics import lower_is_better, metric_value
from verticalize.train import interrupt
from verticalize.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from verticalize.train.distributed import make_accelerator, padded_shard
from verticalize.train.schedules import build_scheduler
from verticalize.train.sharding import held_bytes, placement_for
from verticalize.train.trackers import MetricsLog

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


@dataclass
class Recipe:
    """What a task gives the loop."""

    items: Sequence[dict]  # training items, each with input_ids
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    loss: Callable  # (model, batch) -> (mean loss over the batch, its weight)
    weight: Callable[[dict], int]  # an item's share of a step's loss: 1, or labelled tokens
    evaluate: Callable  # (model) -> validation metrics, "loss" included
    order: Callable[[int], list[int]] | None = None  # epoch -> item order (default: shuffled)
    label: str = "train"  # progress-bar and log name


@dataclass
class TrainOutcome:
    steps: int
    epochs_run: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    resumed_from: str | None
    train_seconds: float
    world_size: int = 1
    strategy: str = "ddp"
    state_bytes: int = 0  # parameters, gradients and optimizer states held per process
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict:
        """Every field but the model."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}

    def manifest_fields(self, metric: str) -> dict:
        """What the train manifest records of a finished run."""
        return {
            "steps": self.steps,
            "epochs_run": self.epochs_run,
            "best_metric": {metric: self.best_metric},
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from,
            "train_seconds": round(self.train_seconds, 2),
            "processes": self.world_size,
            "strategy": self.strategy,
            "state_bytes_per_process": self.state_bytes,
        }


def _optimizer(model, cfg) -> torch.optim.AdamW:
    """AdamW without decay on biases and norms; a model may give some parameters their own
    learning rate through `lr_of(name)` (e.g. a freshly initialised NER head)."""
    lr_of = getattr(model, "lr_of", lambda name: None)
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = 0.0 if name.endswith(NO_DECAY) else cfg.weight_decay
            groups.setdefault((lr_of(name) or cfg.lr, decay), []).append(p)
    params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    return torch.optim.AdamW(params, lr=cfg.lr, fused=True)  # one kernel per step, CPU or GPU


def enable_activation_checkpointing(model) -> None:
    """Recompute activations in backward; non-reentrant works with frozen inputs (LoRA)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the transformers v5 name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def release_freed_memory() -> None:
    """Collect garbage and give freed heap pages back to the OS (glibc keeps them), so what
    follows (an evaluation, a plan's calibration) does not stack its peak on top of them."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _improved(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if lower_is_better(metric) else value > best


def train_model(
    t: TrainConfig,
    seed: int,
    model,
    recipe: Recipe,
    out_dir: Path,
    tracker=None,
    memory_check: Callable | None = None,
) -> TrainOutcome:
    """Train `model`; the outcome's `model` holds the best weights seen on validation (the
    same object, except under FSDP, which gives back a plain model rebuilt from the shards).
    `tracker` (MLflow, main process only) receives every logged row; `memory_check(model,
    items)` may refuse to start (the T9 memory guard)."""
    if memory_check is not None:
        memory_check(model, recipe.items)
    accelerator = make_accelerator(t)
    rank, world = accelerator.process_index, accelerator.num_processes
    placement = placement_for(t, accelerator)  # whole model per process, or sharded (fsdp)
    main = accelerator.is_main_process
    per_step = t.batch_size * t.grad_accum_steps  # per process; the global step is world ×
    items = recipe.items
    steps_per_epoch = math.ceil(math.ceil(len(items) / world) / per_step)
    total_steps = steps_per_epoch * t.epochs
    eval_every = t.eval_every or steps_per_epoch
    ckpt_every = t.checkpoint_every or eval_every
    metric = t.early_stopping.metric

    if t.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model = placement.shard(model)  # before the optimizer: sharding replaces the parameters
    optimizer = _optimizer(model, t)
    scheduler = build_scheduler(optimizer, t, total_steps)
    model, optimizer = placement.prepare(model, optimizer)
    ckpt_root = out_dir / "checkpoints"

    state = {
        "step": 0,
        "epoch": 0,
        "step_in_epoch": 0,
        "best": None,
        "best_step": None,
        "bad_evals": 0,
        "stopped_early": False,
    }
    resumed_from = None
    if checkpoints := list_checkpoints(ckpt_root):
        resumed_from = str(checkpoints[-1])
        state = load_checkpoint(checkpoints[-1], model, optimizer, scheduler, placement)
    log = MetricsLog(
        out_dir,
        t.tensorboard,
        state["step"] if resumed_from else None,
        tracker,
        recipe.label,
        write=main,  # only rank 0 writes logs (and tracks), checkpoints and weights
    )
    process = psutil.Process()
    started = time.perf_counter()

    def evaluate_and_checkpoint(epoch: int) -> None:
        m = recipe.evaluate(placement.unwrap(model))
        value = metric_value(m, metric)
        if world > 1:  # every rank takes rank 0's early-stopping decision
            value = broadcast_object_list([value])[0]
        row = {"event": "eval", "epoch": epoch, "step": state["step"], "val_loss": m["loss"]}
        row |= {f"val_{k}": v for k, v in m.items() if isinstance(v, float) and k != "loss"}
        log.log(row)
        if _improved(value, state["best"], metric):
            state.update(best=value, best_step=state["step"], bad_evals=0)
            weights = placement.weights(model)  # every rank: sharded weights are gathered
            if main:
                save_weights(weights, out_dir / "best" / "weights.safetensors")
        else:
            state["bad_evals"] += 1
            state["stopped_early"] = state["bad_evals"] >= t.early_stopping.patience
        model.train()

    with progress_bar() as bar, interrupt.cooperative():
        task = bar.add_task(recipe.label, total=total_steps, completed=state["step"], info="")
        model.train()
        for epoch in range(state["epoch"], t.epochs):
            if state["stopped_early"]:
                break
            if recipe.order is not None:
                order = recipe.order(epoch)
            else:
                order = epoch_order(len(items), seed, epoch)
            order = padded_shard(order, rank, world)
            steps = [order[i : i + per_step] for i in range(0, len(order), per_step)]
            for step_idx in range(state["step_in_epoch"], len(steps)):
                tick = time.perf_counter()
                group = steps[step_idx]
                micro = [group[i : i + t.batch_size] for i in range(0, len(group), t.batch_size)]
                total_loss = 0.0
                # normalise by the weight of the whole global step (all ranks), and undo
                # DDP's mean over ranks: N processes then follow 1 process's gradients
                group_weight = sum(recipe.weight(items[i]) for i in group)
                group_size, group_tokens = (
                    len(group),
                    sum(len(items[i]["input_ids"]) for i in group),
                )
                if world > 1:
                    sums = torch.tensor(
                        [group_weight, group_size, group_tokens], dtype=torch.float64
                    )
                    group_weight, group_size, group_tokens = accelerator.reduce(
                        sums, "sum"
                    ).tolist()
                group_weight = max(group_weight, 1) / world
                for j, idx in enumerate(micro):
                    batch = {
                        k: v.to(accelerator.device)
                        for k, v in recipe.collate([items[i] for i in idx]).items()
                    }
                    sync = j == len(micro) - 1
                    with (
                        nullcontext() if sync else placement.no_sync(model),
                        accelerator.autocast(),
                    ):
                        loss, weight = recipe.loss(model, batch)
                        if t.l1 > 0:
                            loss = loss + t.l1 * sum(
                                p.abs().sum()
                                for n, p in model.named_parameters()
                                if p.requires_grad and p.dim() > 1
                            )
                        accelerator.backward(loss * weight / group_weight)
                    total_loss += loss.item() * weight / group_weight / world
                if t.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if world > 1:  # the global step's loss: the sum of every rank's share
                    total_loss = accelerator.reduce(torch.tensor(total_loss), "sum").item()
                state["step"] += 1
                state["step_in_epoch"] = step_idx + 1
                elapsed = time.perf_counter() - tick
                log.log(
                    {
                        "event": "train",
                        "epoch": epoch,
                        "step": state["step"],
                        "total_steps": total_steps,
                        "elapsed_s": round(time.perf_counter() - started, 3),
                        "loss": total_loss,
                        "lr": lr,
                        "examples_per_s": group_size / max(elapsed, 1e-9),
                        "tokens_per_s": group_tokens / max(elapsed, 1e-9),
                        "rss_mb": process.memory_info().rss / 2**20,
                    }
                )
                bar.update(
                    task, advance=1, info=f"epoch {epoch + 1}/{t.epochs} loss {total_loss:.4f}"
                )
                last_of_epoch = step_idx == len(steps) - 1
                if state["step"] % eval_every == 0 or last_of_epoch:
                    # the step's activations are freed, but the allocator keeps their pages:
                    # give them back, so evaluation's peak does not add to training's
                    del batch, loss
                    release_freed_memory()
                    evaluate_and_checkpoint(epoch)
                if last_of_epoch:
                    state.update(epoch=epoch + 1, step_in_epoch=0)
                stopping = interrupt.requested()  # SIGTERM: stop here, checkpoint kept
                if state["step"] % ckpt_every == 0 or last_of_epoch or stopping:
                    save_checkpoint(  # every rank: under fsdp each writes its shards
                        ckpt_root,
                        state["step"],
                        model,
                        optimizer,
                        scheduler,
                        {**state, "world_size": world, "strategy": placement.name},
                        t.keep_checkpoints,
                        placement,
                    )
                if stopping:
                    log.close()
                    raise KeyboardInterrupt
                if state["stopped_early"]:
                    break
    log.close()
    accelerator.wait_for_everyone()  # rank 0 has written the best weights
    best = out_dir / "best" / "weights.safetensors"
    if best.is_file():
        from safetensors.torch import load_file

        placement.load_weights(model, load_file(str(best)), best)
    placement.reshard(model)  # count shards, not the root gathered by the last evaluation
    state_bytes = held_bytes(model, optimizer)
    del optimizer, scheduler  # AdamW's states go before a plain model is rebuilt (fsdp)
    accelerator.free_memory()
    trained = placement.plain(model)
    return TrainOutcome(
        steps=state["step"],
        epochs_run=state["epoch"],
        best_metric=state["best"],
        best_step=state["best_step"],
        stopped_early=state["stopped_early"],
        resumed_from=resumed_from,
        train_seconds=time.perf_counter() - started,
        world_size=world,
        strategy=placement.name,
        state_bytes=state_bytes,
        model=trained,
    )
