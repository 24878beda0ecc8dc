"""What training a generation run would do, for `verticalize plan`: one pass per stage."""

from __future__ import annotations

from verticalize.config import Config, yaml_dir
from verticalize.models.adapt import adapt
from verticalize.models.load import load_causal_lm, resolve_base
from verticalize.plan.workload import Pass, Workload
from verticalize.tasks.generation.lm import generation_recipe, use_chat_template
from verticalize.tasks.generation.train import (
    PROMPT_METHODS,
    bucketed,
    encode_records,
    incremental_start,
    lm_rows,
)


def generation_workload(cfg: Config, train, val, labels=None) -> Workload:
    base, records, _ = incremental_start(cfg, train)
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
    return Workload(model, adapter, passes, len(records), methods, freeze_head=False)
