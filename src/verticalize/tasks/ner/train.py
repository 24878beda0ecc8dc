"""NER training: the backbone (full, freeze or LoRA with PEFT's TOKEN_CLS) plus a tagging
head, on the generic loop; model/ gets the merged backbone, the tokenizer and the head."""

from __future__ import annotations

import shutil
from pathlib import Path

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.models.adapt import adapt, count_parameters, merged
from verticalize.runfolder import RunFolder
from verticalize.tasks.ner.model import encode, ner_recipe, new_tagger, save_tagger
from verticalize.train.distributed import is_main_process
from verticalize.train.loop import train_model


def ner_setup(cfg: Config, train_records, val_records, types: list[str]):
    """(tagger with a fresh head, backbone not adapted; tokenizer; tags; training items;
    recipe), as training builds them; the planner builds the same."""
    model, tokenizer, tags = new_tagger(cfg.model.base, types, cfg.ner)
    scheme, n = cfg.ner.scheme, cfg.model.max_length
    train_set = encode(train_records, tokenizer, tags, scheme, n)
    recipe = ner_recipe(
        train_set,
        encode(val_records, tokenizer, tags, scheme, n),
        val_records,
        tags,
        scheme,
        tokenizer.pad_token_id,
        cfg.train.eval_batch_size,
    )
    return model, tokenizer, tags, train_set, recipe


def train_ner(
    cfg: Config, folder: RunFolder, out_dir: Path, types: list[str], tracker=None, check=None
) -> dict:
    """Train, save model/, and return the train manifest's fields."""
    train_records = read_split(cfg, folder.root, "train")
    val_records = read_split(cfg, folder.root, "validation") or train_records
    model, tokenizer, tags, train_set, recipe = ner_setup(cfg, train_records, val_records, types)
    model.backbone = adapt(model.backbone, cfg.model, "TOKEN_CLS", cfg.model.base)
    total, trainable = count_parameters(model)
    console.print(
        f"train: {cfg.model.base} ({cfg.model.method}) + {model.head.describe()} head, "
        f"{trainable:,} of {total:,} parameters trainable, {len(train_records)} training "
        f"sentences, {len(types)} entity types"
    )
    outcome = train_model(cfg.train, cfg.seed, model, recipe, out_dir, tracker, check)
    model = outcome.model  # a plain model again after FSDP
    if outcome.resumed_from:
        console.print(f"train: resumed from {outcome.resumed_from}")
    if is_main_process():  # rank 0 writes the model
        shutil.rmtree(folder.model_dir, ignore_errors=True)
        final = merged(model.backbone)
        save_tagger(model, final, tokenizer, tags, cfg.ner, cfg.model.max_length, folder.model_dir)
    return {
        "in": len(train_records),
        "out": len(train_records),
        "dropped": {},
        "truncated_to_max_length": train_set.truncated,
        "misaligned_spans": train_set.misaligned_spans,
        "tags": tags,
        "head": model.head.describe(),
        "base_model": cfg.model.base,
        "method": cfg.model.method,
        "parameters": total,
        "trainable_parameters": trainable,
        **outcome.manifest_fields(cfg.train.early_stopping.metric),
    }
