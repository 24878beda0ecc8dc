"""What training would do, built the way the train stage builds it: the base model, how each
method adapts it, and the training passes (items, batching, loss) of the task."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from verticalize.config import Config, ModelConfig
from verticalize.data.outputs import read_split
from verticalize.models.adapt import adapt
from verticalize.plugins import get_task


@dataclass
class Pass:
    """One run of the training loop (generation has one per stage)."""

    label: str
    recipe: object  # verticalize.train.loop.Recipe
    epochs: int
    val_items: int

    @property
    def tokens(self) -> int:
        """Real tokens (after truncation, before padding) of one epoch."""
        return sum(len(x["input_ids"]) for x in self.recipe.items)

    @property
    def seq_len(self) -> int:
        """The widest padded batch the loop can build."""
        return max((len(x["input_ids"]) for x in self.recipe.items), default=1)


@dataclass
class Workload:
    base: nn.Module  # the base model with its task head, not adapted
    adapter: Callable[[nn.Module, ModelConfig], nn.Module]
    passes: list[Pass]
    examples: int  # training records
    methods: list[str] = field(default_factory=list)  # methods this task supports
    freeze_head: bool = True  # method freeze trains the head alone (a causal LM has none)

    def adapted(self, model_cfg: ModelConfig, in_place: bool = False) -> nn.Module:
        """The model as training gets it for `model_cfg`; a copy unless `in_place`."""
        model = self.base if in_place else copy.deepcopy(self.base)
        return self.adapter(model, model_cfg)


def build_workload(cfg: Config, folder, labels: list[str]) -> Workload:
    """The base model and training passes of cfg.task (its plugin), from the data splits."""
    train = read_split(cfg, folder.root, "train")
    val = read_split(cfg, folder.root, "validation") or train
    return get_task(cfg.task).hook("workload", "be planned")(cfg, train, val, labels)


def single_pass(cfg: Config, model: nn.Module, recipe, train, val, adapter=None) -> Workload:
    """The workload of a task trained in one pass of the loop (every task but generation)."""
    passes = [Pass("train", recipe, cfg.train.epochs, len(val))]
    methods = [m for m in get_task(cfg.task).methods if m in ("full", "freeze", "lora")]
    return Workload(model, adapter or (lambda m, mc: adapt(m, mc)), passes, len(train), methods)
