"""Where the model's state lives across processes (T7), and how it is saved and restored.

`Replicated` (DDP, or one process): every process holds the whole model; rank 0 saves it.
`Sharded` (`train.distributed.strategy: fsdp`, 2+ processes): PyTorch FSDP2 (`fully_shard`)
splits every parameter, its gradient and its AdamW states across the processes, like
DeepSpeed ZeRO-3: each transformer block (the model's own `_no_split_modules`) is one unit,
gathered for its forward and backward and freed after. Saving gathers the full tensors
(`torch.distributed.checkpoint.state_dict`), so checkpoints, best weights and model/ are the
same files a 1-process run writes; at the end every process gets a plain model back.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from torch import nn

from verticalize.errors import TrainingError
from verticalize.train.checkpoint import load_trainable, trainable_state

if TYPE_CHECKING:
    from accelerate import Accelerator

    from verticalize.config import TrainConfig


class Replicated:
    """Every process holds the whole model (Accelerate wraps it in DDP)."""

    name = "ddp"

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator

    @property
    def layout(self) -> tuple[int, str]:
        """(processes, strategy): what a checkpoint must have been written with."""
        return self.accelerator.num_processes, self.name

    def shard(self, model: nn.Module) -> nn.Module:
        return model

    def prepare(self, model: nn.Module, optimizer):
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model)

    def no_sync(self, model: nn.Module):
        return self.accelerator.no_sync(model)

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The trainable tensors, on rank 0 (other ranks get {}); every rank calls it."""
        return trainable_state(self.unwrap(model)) if self.accelerator.is_main_process else {}

    def optimizer_state(self, model: nn.Module, optimizer) -> dict:
        return optimizer.state_dict() if self.accelerator.is_main_process else {}

    def load_weights(self, model: nn.Module, tensors: dict, where) -> None:
        load_trainable(self.unwrap(model), tensors, where)

    def load_optimizer(self, model: nn.Module, optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)

    def plain(self, model: nn.Module) -> nn.Module:
        """The trained model as a plain module (what model/ is saved from)."""
        return self.unwrap(model)


class Sharded(Replicated):
    """FSDP2: parameters, gradients and optimizer states sharded over the processes."""

    name = "fsdp"

    def __init__(self, accelerator: Accelerator, t: TrainConfig):
        super().__init__(accelerator)
        self.t = t
        self.skeleton: nn.Module | None = None
        self.ties: list[list[str]] = []

    def shard(self, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        model = model.to(self.accelerator.device)
        self.ties = tied_parameters(model)
        self.skeleton = meta_copy(model)  # rebuilt with the trained weights at the end
        mesh = init_device_mesh(self.accelerator.device.type, (self.accelerator.num_processes,))
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.t.mixed_precision)
        policy = MixedPrecisionPolicy(
            param_dtype=half, reduce_dtype=torch.float32 if half else None
        )
        for unit in block_modules(model):
            fully_shard(unit, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        return model

    def prepare(self, model: nn.Module, optimizer):
        # the model stays as fully_shard made it (Accelerate would wrap it in DDP on CPU)
        return model, self.accelerator.prepare(optimizer)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model

    def no_sync(self, model: nn.Module):
        # gradients are reduce-scattered after every micro-batch and accumulate sharded:
        # skipping the sync would keep whole gradients, which sharding exists to avoid
        return nullcontext()

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(model, options=self._options(cpu_offload=True))
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        return {k: v for k, v in full.items() if k in names}

    def optimizer_state(self, model: nn.Module, optimizer) -> dict:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(
            model, _inner(optimizer), options=self._options(cpu_offload=True)
        )

    def load_weights(self, model: nn.Module, tensors: dict, where) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        missing = set(tensors) - {n for n, _ in model.named_parameters()}
        if missing:
            raise TrainingError(
                f"{where}: weights the model lacks ({sorted(missing)[:3]} …). Fix: the model "
                "section changed since they were written; delete the train/ folder."
            )
        set_model_state_dict(model, tensors, options=self._options(strict=False))

    def load_optimizer(self, model: nn.Module, optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(model, _inner(optimizer), state, options=self._options())

    def plain(self, model: nn.Module) -> nn.Module:
        """Every process gathers the full weights into the skeleton copied before sharding."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(model, options=self._options())
        plain, self.skeleton = self.skeleton, None
        full = {k: v.detach().clone() for k, v in full.items()}
        plain.load_state_dict(full, strict=False, assign=True)
        for group in self.ties:  # assign=True gave each name its own tensor
            first = next(p for n in group if not (p := plain.get_parameter(n)).is_meta)
            for name in group:
                owner, _, leaf = name.rpartition(".")
                setattr(plain.get_submodule(owner), leaf, first)
        left = [n for n, p in plain.named_parameters() if p.is_meta]
        if left:
            raise TrainingError(f"fsdp: no gathered weights for {left[:3]} (internal error)")
        return plain

    @staticmethod
    def _options(**kw):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, **kw)


def placement_for(t: TrainConfig, accelerator: Accelerator) -> Replicated:
    if t.distributed.strategy == "fsdp" and accelerator.num_processes > 1:
        return Sharded(accelerator, t)
    return Replicated(accelerator)


def block_modules(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one, innermost first: the modules whose class a
    transformers model names in `_no_split_modules` (BertLayer, LlamaDecoderLayer, …)."""
    names = set()
    for m in model.modules():
        names |= set(getattr(m, "_no_split_modules", None) or [])
    return [m for m in reversed(list(model.modules())) if type(m).__name__ in names]


def tied_parameters(model: nn.Module) -> list[list[str]]:
    """Names that share one parameter (e.g. an LM head tied to the embeddings)."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters take no memory (device meta), ties kept."""
    memo = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def _inner(optimizer):
    """The torch optimizer inside Accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)
