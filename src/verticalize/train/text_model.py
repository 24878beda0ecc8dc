"""What one training pass of a text model leaves behind, for the tasks that train one
(classification, multilabel, regression): model/ and the train manifest's fields."""

from __future__ import annotations

import shutil
from pathlib import Path

from verticalize.config import Config
from verticalize.train.loop import TrainOutcome


def save_text_model(model, tokenizer, model_dir: Path, max_length: int) -> None:
    """model/ holds the (merged) model and its tokenizer, which truncates as in training so
    predict and serve see what training saw. Rank 0 calls it."""
    shutil.rmtree(model_dir, ignore_errors=True)
    model.save_pretrained(model_dir)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(model_dir)


def pass_fields(
    cfg: Config,
    records: list[dict],
    items: list[dict],
    parameters: tuple[int, int],
    outcome: TrainOutcome,
    **extra,
) -> dict:
    """The train manifest's fields: every record in and out, truncation, the model and
    method, (total, trainable) parameters, the task's `extra` fields, then the outcome's."""
    total, trainable = parameters
    return {
        "in": len(records),
        "out": len(records),
        "dropped": {},
        "truncated_to_max_length": sum(len(x["input_ids"]) >= cfg.model.max_length for x in items),
        "base_model": cfg.model.base,
        "method": cfg.model.method,
        "parameters": total,
        "trainable_parameters": trainable,
        **extra,
        **outcome.manifest_fields(cfg.train.early_stopping.metric),
    }
