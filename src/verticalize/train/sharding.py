"""Where the model's state lives across processes (T7), and how it is saved and restored.

`Replicated` (DDP, or one process): every process holds the whole model; rank 0 saves it.
`Sharded` (`train.distributed.strategy: fsdp`, 2+ processes): PyTorch FSDP2 (`fully_shard`)
splits every parameter, its gradient and its AdamW states across the processes, like
DeepSpeed ZeRO-3: each transformer block (the model's own `_no_split_modules`) is one unit,
gathered for its forward and backward and freed after. Saving gathers the full tensors
for the best weights and model/ (the same files a 1-process run writes); checkpoints keep
every rank's shards (torch.distributed.checkpoint), so saving one gathers nothing. At the
end every process gets a plain model back.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from verticalize.errors import TrainingError
from verticalize.train.checkpoint import check_names, load_trainable, trainable_state

WEIGHTS, OPTIMIZER = "weights.safetensors", "optimizer.pt"  # a checkpoint's whole states
SHARDS = "shards"  # …or every rank's shards (torch.distributed.checkpoint), under fsdp

if TYPE_CHECKING:
    from accelerate import Accelerator

    from verticalize.config import TrainConfig


class Replicated:
    """Every process holds the whole model (Accelerate wraps it in DDP); rank 0 saves it.
    Without an accelerator: one process, the model as it is."""

    name = "ddp"

    def __init__(self, accelerator: Accelerator | None = None):
        self.accelerator = accelerator
        self.main = accelerator is None or accelerator.is_main_process

    @property
    def layout(self) -> tuple[int, str]:
        """(processes, strategy): what a checkpoint must have been written with."""
        return (self.accelerator.num_processes if self.accelerator else 1), self.name

    def shard(self, model: nn.Module) -> nn.Module:
        return model

    def prepare(self, model: nn.Module, optimizer):
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model) if self.accelerator else model

    def no_sync(self, model: nn.Module):
        return self.accelerator.no_sync(model)

    def barrier(self) -> None:
        """Only rank 0 writes whole states: nobody needs to wait for it."""

    def reshard(self, model: nn.Module) -> None:
        """Nothing to free: the model is whole by design."""

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The trainable tensors, on rank 0 (other ranks get {}); every rank calls it."""
        return trainable_state(self.unwrap(model)) if self.main else {}

    def save_states(self, model: nn.Module, optimizer, folder: Path) -> None:
        """Trainable weights and optimizer state into a checkpoint folder (every rank calls)."""
        if self.main:
            save_file(trainable_state(self.unwrap(model)), str(folder / WEIGHTS))
            torch.save(optimizer.state_dict(), folder / OPTIMIZER)

    def load_states(self, model: nn.Module, optimizer, folder: Path) -> None:
        self.load_weights(model, load_file(str(folder / WEIGHTS)), folder)
        optimizer.load_state_dict(torch.load(folder / OPTIMIZER, weights_only=False))

    def load_weights(self, model: nn.Module, tensors: dict, where) -> None:
        load_trainable(self.unwrap(model), tensors, where)

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
        """The trainable tensors gathered whole, one at a time (every rank takes part in
        each gather; only rank 0 keeps them): LoRA never gathers the frozen base model."""
        self.reshard(model)
        out = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                whole = p.full_tensor()  # a collective
                if self.main:
                    out[name] = whole.detach().cpu().contiguous()
                del whole
        return out

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def reshard(self, model: nn.Module) -> None:
        """Back to shards only: the root stays gathered after a forward (an evaluation)."""
        from torch.distributed.fsdp import FSDPModule

        for m in model.modules():
            if isinstance(m, FSDPModule):
                m.reshard()

    def save_states(self, model: nn.Module, optimizer, folder: Path) -> None:
        """Each rank writes its own shards (torch.distributed.checkpoint): nothing is
        gathered, so a checkpoint costs no memory beyond the shards themselves."""
        import torch.distributed.checkpoint as dcp

        dcp.save(self._shards(model, optimizer), checkpoint_id=folder / SHARDS)

    def load_states(self, model: nn.Module, optimizer, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        shards = self._shards(model, optimizer)
        dcp.load(shards, checkpoint_id=folder / SHARDS)  # into these tensors, in place
        set_state_dict(model, _inner(optimizer), **shards)

    def _shards(self, model: nn.Module, optimizer) -> dict:
        """This rank's shards of the trainable weights and of the optimizer state."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        weights, states = get_state_dict(model, _inner(optimizer))
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        weights = {k: v for k, v in weights.items() if k in names}
        return {"model_state_dict": weights, "optim_state_dict": states}

    def load_weights(self, model: nn.Module, tensors: dict, where) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        check_names(model, tensors, where)  # sharding keeps the names
        set_model_state_dict(model, tensors, options=self._options(strict=False))

    def plain(self, model: nn.Module) -> nn.Module:
        """Every process gathers the full weights into the skeleton copied before sharding."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(model, options=self._options())
        plain, self.skeleton = self.skeleton, None
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


def held_bytes(model: nn.Module, optimizer) -> int:
    """Bytes of training state this process holds: its parameters (or their shards), a
    gradient per trainable one, and the optimizer's states."""

    def local(t: torch.Tensor) -> int:
        t = t.to_local() if hasattr(t, "to_local") else t  # a DTensor's own shard
        return t.numel() * t.element_size()

    params = list(model.parameters())
    held = sum(local(p) for p in params) + sum(local(p) for p in params if p.requires_grad)
    for state in _inner(optimizer).state.values():
        held += sum(local(v) for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return held


def _inner(optimizer):
    """The torch optimizer inside Accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)
