"""The generation recipe: continued pre-training on domain text, then supervised
fine-tuning on conversations, in one run; each stage is the shared loop with its own items,
checkpoints and logs (train/continued_pretraining/, train/sft/)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from verticalize.config import Config, yaml_dir
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.errors import ConfigError
from verticalize.models.adapt import adapt, count_parameters, merged
from verticalize.models.load import load_causal_lm, resolve_base
from verticalize.models.text_batches import bucketed_order
from verticalize.tasks.generation.lm import (
    Encoded,
    encode_conversation,
    encode_text,
    generation_recipe,
    pack,
    packed_row,
    padded_row,
    use_chat_template,
)
from verticalize.train.distributed import is_main_process
from verticalize.train.loop import TrainOutcome, train_model

PROMPT_METHODS = ("prompt_tuning", "prefix_tuning")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def incremental_start(cfg: Config, records: list[dict]) -> tuple[str, list[dict], int]:
    """(base model, records to train on, records the previous run already trained on)."""
    prev = cfg.generation.incremental_from
    if not prev:
        return cfg.model.base, records, 0
    root = Path(prev).expanduser()
    if not root.is_absolute() and yaml_dir(cfg) and (yaml_dir(cfg) / root).exists():
        root = yaml_dir(cfg) / root
    if not (root / "model").is_dir():
        raise ConfigError(
            f"generation.incremental_from: {prev!r} has no model/ folder. Fix: point it at "
            "the run folder of a finished run (it holds model/ and data/)."
        )
    seen = {text_digest(r["text"]) for r in read_split(cfg, root, "train")}
    new = [r for r in records if text_digest(r["text"]) not in seen]
    return str((root / "model").resolve()), new, len(records) - len(new)


def encode_records(records: list[dict], tokenizer, kind: str, cfg: Config) -> list[Encoded]:
    g = cfg.generation
    if kind == "continued_pretraining":
        return [e for r in records for e in encode_text(tokenizer, r["text"], g.block_size)]
    return [encode_conversation(tokenizer, r["messages"], cfg.model.max_length) for r in records]


def lm_rows(seqs: list[Encoded], packing: bool, block_size: int) -> list[dict]:
    if packing:
        return [packed_row(b) for b in pack(seqs, block_size)]
    return [padded_row(s) for s in seqs]


def bucketed(rows: list[dict], cfg: Config):
    """Epoch → an order with similar lengths in each batch (padded batches: less padding)."""
    lengths = [len(r["input_ids"]) for r in rows]

    def order(epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        return bucketed_order(lengths, cfg.train.batch_size, g)

    return order


def train_generation(cfg: Config, folder, out_dir: Path, tracker=None, check=None) -> dict:
    """Run the configured stages; save the model to model/; return the manifest fields."""
    records = read_split(cfg, folder.root, "train")
    val_records = read_split(cfg, folder.root, "validation") or records
    base, records, already = incremental_start(cfg, records)
    model, tokenizer = load_causal_lm(base)
    use_chat_template(tokenizer, cfg.generation.chat_template, yaml_dir(cfg))
    model = adapt(model, cfg.model, "CAUSAL_LM", resolve_base(base))
    total, trainable = count_parameters(model)
    packing = cfg.generation.packing and cfg.model.method not in PROMPT_METHODS
    console.print(
        f"train: {base} ({cfg.model.method}), {trainable:,} of {total:,} parameters trainable, "
        f"{len(records)} training records, packing {'on' if packing else 'off'}"
    )
    stages, dropped = {}, {}
    if already:
        dropped["incremental_already_trained"] = already
    used = set()
    for kind in cfg.generation.stages:
        pretraining = kind == "continued_pretraining"  # text records; sft: conversations
        mine = [r for r in records if ("messages" in r) != pretraining]
        held = [r for r in val_records if ("messages" in r) != pretraining]
        if not mine:
            what = "`pretrain: true` text" if pretraining else "conversation (chat/templates)"
            raise ConfigError(
                f"generation.stages: '{kind}' has no {what} records in the training split. "
                "Fix: add such a source to data.sources, or remove the stage."
            )
        seqs = encode_records(mine, tokenizer, kind, cfg)  # pre-training: blocks, not records
        if pretraining:
            used |= {r["id"] for r in mine}
        else:  # a conversation whose answers were truncated away teaches nothing
            kept = [(r, s) for r, s in zip(mine, seqs, strict=True) if s.n_supervised > 0]
            if len(kept) < len(seqs):
                dropped["answer_truncated_away"] = len(seqs) - len(kept)
            used |= {r["id"] for r, _ in kept}
            seqs = [s for _, s in kept]
        rows = lm_rows(seqs, packing, cfg.generation.block_size)
        val_rows = lm_rows(encode_records(held, tokenizer, kind, cfg), False, 0)
        t = cfg.train
        if pretraining:
            t = t.model_copy(
                update={
                    "epochs": cfg.generation.pretrain_epochs,
                    "lr": cfg.generation.pretrain_lr or t.lr,
                }
            )
        order = None if packing else bucketed(rows, cfg)
        recipe = generation_recipe(rows, val_rows, tokenizer.pad_token_id, kind, order)
        outcome: TrainOutcome = train_model(t, cfg.seed, model, recipe, out_dir / kind, tracker)
        model = outcome.model  # the next stage goes on from it (plain again after FSDP)
        if outcome.resumed_from:
            console.print(f"train: {kind} resumed from {outcome.resumed_from}")
        tokens = sum(len(s.input_ids) for s in seqs)
        stages[kind] = {
            "records": len(mine),
            "sequences": len(seqs),
            "rows": len(rows),
            "tokens": tokens,
            "padding_free_share": round(tokens / max(sum(len(r["input_ids"]) for r in rows), 1), 4),
            "truncated": sum(s.truncated for s in seqs),
            **outcome.record(),
        }
    if is_main_process():  # rank 0 writes the model
        shutil.rmtree(folder.model_dir, ignore_errors=True)
        merged(model).save_pretrained(folder.model_dir)
        tokenizer.save_pretrained(folder.model_dir)
    last = stages[cfg.generation.stages[-1]]
    unused = len(records) - len(used) - dropped.get("answer_truncated_away", 0)
    if unused:  # e.g. pre-training text when only sft runs
        dropped["not_used_by_any_stage"] = unused
    return {
        "in": len(records) + already,
        "out": len(used),
        "dropped": dropped,
        "base_model": base,
        "method": cfg.model.method,
        "packing": packing,
        "parameters": total,
        "trainable_parameters": trainable,
        "stages": stages,
        "steps": sum(s["steps"] for s in stages.values()),
        "epochs_run": last["epochs_run"],
        "best_metric": {"loss": last["best_metric"]},
        "best_step": last["best_step"],
        "stopped_early": last["stopped_early"],
        "resumed_from": last["resumed_from"],
        "train_seconds": round(sum(s["train_seconds"] for s in stages.values()), 2),
        "truncated_to_max_length": sum(s["truncated"] for s in stages.values()),
    }
