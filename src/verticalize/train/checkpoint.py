"""Checkpoints (T4): trainable weights, optimizer, schedule, RNG and loop state, written
atomically so a killed run resumes from the last complete one and ends the same."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from verticalize.errors import TrainingError

STATE_FILE = "trainer_state.json"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes: small for LoRA/freeze, everything for full tuning."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k in names}


def check_names(model: nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """Refuse saved weights the model has no place for (its model section changed)."""
    missing = set(tensors) - set(model.state_dict())
    if missing:
        raise TrainingError(
            f"{where}: checkpoint has weights the model lacks ({sorted(missing)[:3]} …). Fix: "
            "the model section changed since it was written; delete the train/ folder to start over."
        )


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    check_names(model, tensors, where)
    model.load_state_dict(tensors, strict=False)


def save_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(
    root: Path, step: int, model, optimizer, scheduler, state: dict, keep: int, placement
) -> Path:
    """Write step-N/ atomically: the model's and optimizer's states (through `placement`,
    train.sharding: whole tensors from rank 0, or every rank's shards), the schedule, RNG
    states and the loop `state`; keep the last `keep`. Every process calls it."""
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    if placement.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    placement.barrier()
    placement.save_states(model, optimizer, tmp)
    if not placement.main:
        return final
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    torch.save(rng, tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a temp folder from a killed write is ignored)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())


def load_checkpoint(path: Path, model, optimizer, scheduler, placement) -> dict:
    """Restore a checkpoint into the model, optimizer and schedule and return the loop state.
    Refused when written by another process count or strategy."""
    world, strategy = placement.layout
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        written_by = state.get("world_size", 1)
        if written_by != world:  # the data order and step count depend on the process count
            raise TrainingError(
                f"{path}: written by a run with {written_by} process(es), resumed with {world}. "
                f"Fix: resume with --nproc {written_by}, or delete the train/ folder to start over."
            )
        if (was := state.get("strategy", "ddp")) != strategy:  # states are stored differently
            raise TrainingError(
                f"{path}: written with train.distributed.strategy {was}, resumed with {strategy}. "
                f"Fix: set strategy: {was} to resume, or delete the train/ folder to start over."
            )
        placement.load_states(model, optimizer, path)
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        rng = torch.load(path / "rng.pt", weights_only=False)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise TrainingError(
            f"{path}: cannot resume from this checkpoint ({e}). Fix: delete it to resume from "
            "the one before, or delete the train/ folder to start over."
        ) from None
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    return state
