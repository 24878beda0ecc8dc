"""Data-parallel training (T7) through Accelerate: the same YAML on 1 or N processes.

Processes come from a launcher (`verticalize train --nproc N` = torchrun's engine,
`torchrun`, `accelerate launch`, Slurm's srun, a Kubernetes PyTorchJob), which sets RANK /
WORLD_SIZE / MASTER_ADDR. `train.distributed.strategy` picks how they share the model:
DDP (CPU gloo or GPU NCCL), FSDP or DeepSpeed ZeRO (GPU only: on CPU they fall back to DDP).
`batch_size` is per process, so N processes train on N × batch_size examples a step.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from verticalize.config import TrainConfig
from verticalize.console import console
from verticalize.errors import TrainingError

if TYPE_CHECKING:  # torch and accelerate load only when training does (the CLI starts fast)
    from accelerate import Accelerator, PartialState


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """Processes on this machine (they share its memory)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def strategy_in_effect(t: TrainConfig) -> str:
    """The configured strategy, or ddp where it cannot run (FSDP/DeepSpeed need CUDA)."""
    import torch

    wanted = t.distributed.strategy
    if wanted != "ddp" and not torch.cuda.is_available():
        if is_main_process() and world_size() > 1:
            console.print(
                f"[yellow]warning:[/yellow] train.distributed.strategy {wanted} needs CUDA GPUs; "
                "this machine has none, so the processes train with DDP (gloo) instead"
            )
        return "ddp"
    return wanted


def process_state(t: TrainConfig) -> PartialState:
    """Join the process group (a no-op in a single process); the Accelerator reuses it."""
    import torch
    from accelerate import PartialState

    timeout = timedelta(seconds=t.distributed.timeout_s)
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timeout)


def _sharding_plugins(t: TrainConfig, strategy: str) -> dict:
    d = t.distributed
    if strategy == "fsdp":
        from accelerate import FullyShardedDataParallelPlugin

        return {
            "fsdp_plugin": FullyShardedDataParallelPlugin(
                sharding_strategy=d.fsdp_sharding,
                cpu_offload=d.fsdp_cpu_offload,
                auto_wrap_policy="transformer_based_wrap",
                state_dict_type="FULL_STATE_DICT",
                use_orig_params=True,  # frozen + trainable parameters may share a shard (LoRA)
            )
        }
    if strategy == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise TrainingError(
                "train.distributed.strategy: deepspeed is not installed. Fix: `pip install "
                "deepspeed` on the GPU nodes, or use strategy: fsdp / ddp."
            ) from None
        from accelerate import DeepSpeedPlugin

        offload = d.zero_offload if d.zero_offload != "none" else None
        return {
            "deepspeed_plugin": DeepSpeedPlugin(
                zero_stage=d.zero_stage,
                gradient_accumulation_steps=1,  # the loop accumulates (and weights) micro-batches
                gradient_clipping=t.max_grad_norm or 0.0,
                offload_optimizer_device=offload,
                offload_param_device=offload if d.zero_stage == 3 else None,
            )
        }
    return {}


def make_accelerator(t: TrainConfig) -> tuple[Accelerator, str]:
    """An Accelerator for this launch and the strategy it really uses."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    process_state(t)
    strategy = strategy_in_effect(t)
    handlers = [
        InitProcessGroupKwargs(timeout=timedelta(seconds=t.distributed.timeout_s)),
        # every trainable parameter takes part in each step (NER freezes BERT's unused pooler)
        DistributedDataParallelKwargs(find_unused_parameters=False),
    ]
    accelerator = Accelerator(
        mixed_precision=t.mixed_precision,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=handlers,
        **_sharding_plugins(t, strategy),
    )
    if strategy == "deepspeed":  # it needs the micro-batch size without a DataLoader
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = t.batch_size
    return accelerator, strategy


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
