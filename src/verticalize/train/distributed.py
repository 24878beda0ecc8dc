"""Data-parallel training (T7) through Accelerate: the same YAML on 1 or N processes.

Processes come from a launcher (`verticalize train --nproc N` = torchrun's engine,
`torchrun`, `accelerate launch`, Slurm's srun, a Kubernetes PyTorchJob), which sets RANK /
WORLD_SIZE / MASTER_ADDR. `train.distributed.strategy` picks how they share the model:
DDP (every process holds it) or FSDP (sharded, see train.sharding), over gloo (CPU) or NCCL
(GPU); DeepSpeed is refused.
`batch_size` is per process, so N processes train on N × batch_size examples a step.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from verticalize.config import TrainConfig
from verticalize.errors import TrainingError

if TYPE_CHECKING:  # torch and accelerate load only when training does (the CLI starts fast)
    from accelerate import Accelerator, PartialState


LAUNCHED = "VERTICALIZE_LAUNCHED"  # set for the workers `verticalize train --nproc N` starts


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """Processes on this machine (they share its memory)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def is_main_process() -> bool:
    """Rank 0 of a launch, or a single process (no RANK)."""
    return os.environ.get("RANK", "0") in ("", "0")


def check_strategy(t: TrainConfig) -> None:
    """Refused before any work: DeepSpeed (FSDP is its ZeRO-3 built into PyTorch), and FSDP
    with fp16 (no sharded loss scaler here)."""
    if t.distributed.strategy == "deepspeed":
        raise TrainingError(
            "train.distributed.strategy: deepspeed is not supported (it needs CUDA kernels and "
            "its own checkpoint format). Fix: strategy: fsdp shards parameters, gradients and "
            "optimizer states like ZeRO-3 with PyTorch's FSDP2, on GPU (NCCL) or CPU (gloo); "
            "or ddp when the model fits one device."
        )
    if t.distributed.strategy == "fsdp" and t.mixed_precision == "fp16":
        raise TrainingError(
            "train.distributed.strategy: fsdp with mixed_precision: fp16 is not supported "
            "(fp16 needs a loss scaler that knows the shards). Fix: mixed_precision: bf16 "
            "(Ampere or newer GPUs), or no."
        )


def process_state(t: TrainConfig) -> PartialState:
    """Join the process group (a no-op in a single process); the Accelerator reuses it."""
    import torch
    from accelerate import PartialState

    timeout = timedelta(seconds=t.distributed.timeout_s)
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timeout)


def make_accelerator(t: TrainConfig) -> Accelerator:
    """An Accelerator for this launch (it wraps the model in DDP when there are several
    processes and the strategy is ddp; train.sharding shards it itself for fsdp)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    check_strategy(t)
    process_state(t)  # joins the group with train.distributed.timeout_s
    # every trainable parameter takes part in each step (NER freezes BERT's unused pooler)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=False)
    return Accelerator(
        mixed_precision=t.mixed_precision,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[ddp],
    )


def padded_shard(order: list[int], rank: int, world: int) -> list[int]:
    """This rank's share of an epoch's order. The order is first padded (wrapping around,
    like DistributedSampler) to a multiple of `world`, so every rank runs the same number
    of steps; step k of every rank together is step k of a 1-process run with a `world`
    times larger batch."""
    if world == 1:
        return list(order)
    pad = (-len(order)) % world
    order = list(order) + list(order[:pad])
    return order[rank::world]


def leave_process_group(wait: bool) -> None:
    """End a distributed command cleanly (a no-op in a single process); `wait` = a barrier
    first, which a failed process must skip (the others may never reach it)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
