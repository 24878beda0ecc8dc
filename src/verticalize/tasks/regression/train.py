"""Regression training: a one-output sequence model (full, freeze, layer-drop or LoRA) on the
generic loop; model/ gets the merged model, rescaled to predict in the target's own unit."""

from __future__ import annotations

from pathlib import Path

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.models.adapt import adapt, count_parameters, merged
from verticalize.models.load import load_sequence_classifier
from verticalize.runfolder import RunFolder
from verticalize.tasks.regression.model import (
    EncodedRecords,
    Scale,
    fold_scale,
    regression_recipe,
    target_of,
)
from verticalize.tasks.regression.settings import settings_of
from verticalize.train.distributed import is_main_process
from verticalize.train.loop import train_model
from verticalize.train.text_model import pass_fields, save_text_model

OUTPUT_NAME = "score"  # the single output's name in config.json (id2label)


def regression_setup(cfg: Config, train_records: list[dict], val_records: list[dict]):
    """(model with a fresh one-output head, not adapted; tokenizer; training items; recipe;
    target scale), as training builds them; the planner builds the same."""
    s = settings_of(cfg)
    model, tokenizer = load_sequence_classifier(cfg.model.base, [OUTPUT_NAME])
    model.config.problem_type = "regression"
    scale = Scale.fit([target_of(r) for r in train_records], s.standardize, s.transform)
    train_set = EncodedRecords(train_records, tokenizer, scale, cfg.model.max_length)
    val_set = EncodedRecords(val_records, tokenizer, scale, cfg.model.max_length)
    recipe = regression_recipe(
        train_set,
        val_set,
        scale,
        s.loss,
        s.huber_delta,
        tokenizer.pad_token_id,
        cfg.train.eval_batch_size,
    )
    return model, tokenizer, train_set, recipe, scale


def train_regression(
    cfg: Config, folder: RunFolder, out_dir: Path, tracker=None, check=None
) -> dict:
    """Train, save model/ (rank 0), and return the train manifest's fields."""
    train_records = read_split(cfg, folder.root, "train")
    val_records = read_split(cfg, folder.root, "validation") or train_records
    model, tokenizer, train_set, recipe, scale = regression_setup(cfg, train_records, val_records)
    model = adapt(model, cfg.model)
    total, trainable = count_parameters(model)
    of = f" ({scale.transform})" if scale.transform != "none" else ""
    console.print(
        f"train: {cfg.model.base} ({cfg.model.method}), {trainable:,} of {total:,} parameters "
        f"trainable, {len(train_records)} training records, target{of} mean {scale.mean:.4g} "
        f"std {scale.std:.4g}"
    )
    outcome = train_model(cfg.train, cfg.seed, model, recipe, out_dir, tracker, check)
    model = outcome.model  # a plain model again after FSDP
    if outcome.resumed_from:
        console.print(f"train: resumed from {outcome.resumed_from}")
    if is_main_process():
        final = merged(model)
        fold_scale(final, scale)
        save_text_model(final, tokenizer, folder.model_dir, cfg.model.max_length)
    return pass_fields(
        cfg,
        train_records,
        train_set.items,
        (total, trainable),
        outcome,
        target_scale={"mean": scale.mean, "std": scale.std, "transform": scale.transform},
        loss=settings_of(cfg).loss,
    )
