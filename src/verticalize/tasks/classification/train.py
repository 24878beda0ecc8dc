"""Classification training: a sequence-classification model (full, freeze, layer-drop, LoRA
or prompt tuning) on the generic loop; model/ gets the merged model and the tokenizer."""

from __future__ import annotations

from pathlib import Path

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.models.adapt import adapt, count_parameters, merged
from verticalize.models.load import load_sequence_classifier
from verticalize.runfolder import RunFolder
from verticalize.tasks.classification.encode import EncodedRecords
from verticalize.tasks.classification.imbalance import tune_head
from verticalize.tasks.classification.recipe import classification_recipe
from verticalize.train.distributed import is_main_process
from verticalize.train.loop import train_model
from verticalize.train.text_model import pass_fields, save_text_model


def classification_setup(cfg: Config, train_records, val_records, labels: list[str]):
    """(model with a fresh head, not adapted; tokenizer; training items; recipe), as training
    builds them; the planner builds the same."""
    model, tokenizer = load_sequence_classifier(cfg.model.base, labels)
    label2id = {lab: i for i, lab in enumerate(labels)}
    train_set = EncodedRecords(train_records, tokenizer, label2id, cfg.model.max_length)
    val_set = EncodedRecords(val_records, tokenizer, label2id, cfg.model.max_length)
    recipe = classification_recipe(
        train_set,
        val_set,
        [r["label"] for r in val_records],
        labels,
        tokenizer.pad_token_id,
        cfg.train,
        cfg.seed,
    )
    return model, tokenizer, train_set, recipe


def train_classification(
    cfg: Config, folder: RunFolder, out_dir: Path, labels: list[str], tracker=None, check=None
) -> dict:
    """Train, save model/ (rank 0), and return the train manifest's fields."""
    train_records = read_split(cfg, folder.root, "train")
    val_records = read_split(cfg, folder.root, "validation") or train_records
    model, tokenizer, train_set, recipe = classification_setup(
        cfg, train_records, val_records, labels
    )
    model = adapt(model, cfg.model)
    total, trainable = count_parameters(model)
    console.print(
        f"train: {cfg.model.base} ({cfg.model.method}), {trainable:,} of {total:,} parameters "
        f"trainable, {len(train_records)} training records"
    )
    outcome = train_model(cfg.train, cfg.seed, model, recipe, out_dir, tracker, check)
    model = outcome.model  # a plain model again after FSDP
    if outcome.resumed_from:
        console.print(f"train: resumed from {outcome.resumed_from}")
    model = merged(model)
    extra = {}
    if cfg.train.tune_thresholds:
        extra["class_offsets"] = tune_head(
            cfg.train, cfg.model.max_length, model, tokenizer, val_records, labels
        )
    if is_main_process():
        save_text_model(model, tokenizer, folder.model_dir, cfg.model.max_length)
    return pass_fields(cfg, train_records, train_set.items, (total, trainable), outcome, **extra)
