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

    def adapted(self, model_cfg: ModelConfig, in_place: bool = False) -> nn.Module:
        """The model as training gets it for `model_cfg`; a copy unless `in_place`."""
        model = self.base if in_place else copy.deepcopy(self.base)
        return self.adapter(model, model_cfg)


def build_workload(cfg: Config, folder, labels: list[str]) -> Workload:
    """The base model and training passes for cfg.task, from the run's data splits."""
    train = read_split(cfg, folder.root, "train")
    val = read_split(cfg, folder.root, "validation") or train
    if cfg.task == "generation":
        return _generation(cfg, train, val)
    if cfg.task == "ner":
        return _ner(cfg, train, val, labels)
    return _classification(cfg, train, val, labels)


def _classification(cfg: Config, train, val, labels) -> Workload:
    from verticalize.train.classification import classification_setup

    model, _, _, recipe = classification_setup(cfg, train, val, labels)
    passes = [Pass("train", recipe, cfg.train.epochs, len(val))]
    methods = ["full", "freeze", "lora"]  # prompt tuning: generation only (config.py)
    return Workload(model, lambda m, mc: adapt(m, mc), passes, len(train), methods)


def _ner(cfg: Config, train, val, types) -> Workload:
    from verticalize.train.ner import ner_setup

    model, _, _, _, recipe = ner_setup(cfg, train, val, types)

    def adapter(m, mc):
        m.backbone = adapt(m.backbone, mc, "TOKEN_CLS", cfg.model.base)
        return m

    passes = [Pass("train", recipe, cfg.train.epochs, len(val))]
    return Workload(model, adapter, passes, len(train), ["full", "freeze", "lora"])


def _generation(cfg: Config, train, val) -> Workload:
    from verticalize.config import yaml_dir
    from verticalize.models.load import load_causal_lm, resolve_base
    from verticalize.tasks.generation import generation_recipe, use_chat_template
    from verticalize.train.generation import PROMPT_METHODS, bucketed, encode_records, lm_rows

    base, records, _ = _incremental(cfg, train)
    model, tok = load_causal_lm(base)
    use_chat_template(tok, cfg.generation.chat_template, yaml_dir(cfg))
    location = resolve_base(base)
    packing = cfg.generation.packing and cfg.model.method not in PROMPT_METHODS
    passes = []
    for kind in cfg.generation.stages:
        pretraining = kind == "continued_pretraining"
        mine = [r for r in records if ("messages" in r) != pretraining]
        held = [r for r in val if ("messages" in r) != pretraining]
        if not mine:
            continue
        seqs = [s for s in encode_records(mine, tok, kind, cfg) if s.n_supervised > 0]
        rows = lm_rows(seqs, packing, cfg.generation.block_size)
        val_rows = lm_rows(encode_records(held, tok, kind, cfg), False, 0)
        order = None if packing else bucketed(rows, cfg)  # as the trainer orders them
        recipe = generation_recipe(rows, val_rows, tok.pad_token_id, kind, order)
        epochs = cfg.generation.pretrain_epochs if pretraining else cfg.train.epochs
        passes.append(Pass(kind, recipe, epochs, len(val_rows)))

    def adapter(m, mc):
        return adapt(m, mc, "CAUSAL_LM", location)

    methods = ["full", "freeze", "lora", "prompt_tuning"]
    return Workload(model, adapter, passes, len(records), methods)


def _incremental(cfg: Config, records: list[dict]):
    from verticalize.train.generation import incremental_start

    return incremental_start(cfg, records)
