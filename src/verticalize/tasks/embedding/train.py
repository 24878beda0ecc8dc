"""Embedding training: a head-less encoder (full, freeze, layer-drop or LoRA) on the generic
loop with the multiple-negatives ranking loss; model/ gets the merged encoder, loadable with
`AutoModel`, and its tokenizer. config.json records the pooling and the prefixes."""

from __future__ import annotations

from pathlib import Path

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.models.adapt import adapt, count_parameters, merged
from verticalize.models.load import load_encoder
from verticalize.runfolder import RunFolder
from verticalize.tasks.embedding.model import PairItems, embedding_recipe
from verticalize.tasks.embedding.pairs import pairs_of
from verticalize.tasks.embedding.settings import SETTINGS_KEY, EmbeddingConfig, settings_of
from verticalize.train.distributed import is_main_process
from verticalize.train.loop import train_model
from verticalize.train.text_model import pass_fields, save_text_model

PEFT_TASK = "FEATURE_EXTRACTION"  # LoRA on a model without a head


def embedding_setup(cfg: Config, train_records: list[dict], val_records: list[dict]):
    """(encoder, not adapted; tokenizer; training items; recipe), as training builds them;
    the planner builds the same."""
    s = settings_of(cfg)
    model, tokenizer = load_encoder(cfg.model.base)
    if (pooler := getattr(model, "pooler", None)) is not None:
        pooler.requires_grad_(False)  # BERT's pooler: mean pooling never uses it
    train_pairs = pairs_of(train_records, s)
    train_set = PairItems(train_pairs, tokenizer, cfg.model.max_length, s)
    recipe = embedding_recipe(
        train_set,
        train_pairs,
        pairs_of(val_records, s),
        tokenizer,
        s,
        cfg.model.max_length,
        cfg.train.batch_size,
        cfg.train.eval_batch_size,
    )
    return model, tokenizer, train_set, recipe


def adapt_encoder(model, model_cfg):
    return adapt(model, model_cfg, PEFT_TASK)


def record_settings(config, s: EmbeddingConfig) -> None:
    """config.json's `sentence_embedding`: how to turn the model's output into a vector."""
    setattr(
        config,
        SETTINGS_KEY,
        {
            "pooling": "mean",
            "normalize": True,
            "query_prefix": s.query_prefix,
            "passage_prefix": s.passage_prefix,
        },
    )


def train_embedding(
    cfg: Config, folder: RunFolder, out_dir: Path, tracker=None, check=None
) -> dict:
    """Train, save model/ (rank 0), and return the train manifest's fields."""
    s = settings_of(cfg)
    train_records = read_split(cfg, folder.root, "train")
    val_records = read_split(cfg, folder.root, "validation") or train_records
    model, tokenizer, train_set, recipe = embedding_setup(cfg, train_records, val_records)
    model = adapt_encoder(model, cfg.model)
    total, trainable = count_parameters(model)
    negatives = sum(1 for x in train_set.items if x["parts"][2])
    console.print(
        f"train: {cfg.model.base} ({cfg.model.method}), {trainable:,} of {total:,} parameters "
        f"trainable, {len(train_records)} training pairs ({negatives} with a hard negative), "
        f"{len(val_records)} validation queries"
    )
    outcome = train_model(cfg.train, cfg.seed, model, recipe, out_dir, tracker, check)
    if outcome.resumed_from:
        console.print(f"train: resumed from {outcome.resumed_from}")
    if is_main_process():
        final = merged(outcome.model)
        record_settings(final.config, s)
        save_text_model(final, tokenizer, folder.model_dir, cfg.model.max_length)
    return pass_fields(
        cfg,
        train_records,
        train_set.items,
        (total, trainable),
        outcome,
        truncated_to_max_length=train_set.truncated(),
        hard_negatives=negatives,
        loss={"name": "multiple_negatives_ranking", "scale": s.scale},
    )
