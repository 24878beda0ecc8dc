"""Domain-adaptive pre-training of an encoder (T6): masked-LM training on the data stage's
data/pretrain.jsonl with the shared loop, before the task's fine-tuning, which then loads
the adapted encoder instead of model.base.

train/continued_pretraining/ holds its checkpoints, metrics and best weights, and model/ the
adapted encoder; `done.json`, written last, marks it complete, so a resumed run whose
training was killed later does not pre-train again.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from verticalize.config import Config, EarlyStopping
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.errors import DataError
from verticalize.models.adapt import count_parameters
from verticalize.models.masked_lm import (
    freeze_word_embeddings,
    load_masked_lm,
    save_adapted_encoder,
)
from verticalize.runfolder import RunFolder, write_json_atomic
from verticalize.train.distributed import is_main_process, process_state
from verticalize.train.loop import train_model
from verticalize.train.masked_lm import encode_texts, masked_lm_recipe

STAGE = "continued_pretraining"  # the sub-folder of train/ and the metrics' prefix
DONE = "done.json"
HELD_OUT_SHARE, HELD_OUT_MIN, HELD_OUT_MAX = 0.05, 8, 256


def held_out_split(records: list[dict], seed: int, cap: int | None) -> tuple[list, list]:
    """(training records, held-out records): a seeded held-out slice of 5% (8 to 256), the
    rest capped at `cap` by a seeded sample."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_held = min(max(round(len(records) * HELD_OUT_SHARE), HELD_OUT_MIN), HELD_OUT_MAX)
    n_held = min(n_held, len(records) // 2)
    held, rest = order[:n_held], order[n_held:]
    if cap is not None:
        rest = rest[:cap]
    return [records[i] for i in sorted(rest)], [records[i] for i in sorted(held)]


def pretrain_encoder(
    cfg: Config, folder: RunFolder, train_dir: Path, tracker=None, check=None
) -> tuple[Config, dict]:
    """Pre-train (or find pre-trained) the encoder; returns (the config the task trains
    with: model.base = the adapted encoder, the train manifest's continued_pretraining)."""
    out_dir = train_dir / STAGE
    model_dir = out_dir / "model"
    done = out_dir / DONE
    if done.is_file() and (model_dir / "config.json").is_file():
        fields = json.loads(done.read_text(encoding="utf-8"))
        console.print(f"train: continued pre-training already done ({model_dir})")
    else:
        fields = _pretrain(cfg, folder, out_dir, model_dir, tracker, check)
    process_state(cfg.train).wait_for_everyone()  # rank 0 has written model/
    model = cfg.model.model_copy(update={"base": str(model_dir)})
    return cfg.model_copy(update={"model": model}), fields


def _pretrain(cfg, folder, out_dir, model_dir, tracker, check) -> dict:
    cp = cfg.train.continued_pretraining
    records = read_split(cfg, folder.root, "pretrain")
    if len(records) < 2:
        raise DataError(
            f"{folder.root / 'data' / 'pretrain.jsonl'}: {len(records)} pretrain records "
            "after curation; masked-LM pre-training needs at least 2. Fix: add unlabelled "
            "text to the `pretrain: true` sources, or see data/quarantine.jsonl."
        )
    train_records, held_records = held_out_split(records, cfg.seed, cp.max_records)
    model, tokenizer, new_weights = load_masked_lm(cfg.model.base)
    if cfg.model.freeze_embeddings:
        freeze_word_embeddings(model)
    max_length = cp.max_length or cfg.model.max_length
    items = encode_texts(tokenizer, [r["text"] for r in train_records], max_length)
    held = encode_texts(tokenizer, [r["text"] for r in held_records], max_length)
    recipe = masked_lm_recipe(
        items, held, tokenizer, cp.mask_prob, cfg.seed, cfg.train.eval_batch_size
    )
    total, trainable = count_parameters(model)
    heads = sorted({k.split(".")[0] for k in new_weights})
    fresh = (
        f"; its MLM head ({', '.join(heads)}) is not in the weights: initialised" if heads else ""
    )
    console.print(
        f"train: continued pre-training (masked LM) of {cfg.model.base} on {len(items)} "
        f"texts ({len(held)} held out), {trainable:,} of {total:,} parameters trainable{fresh}"
    )
    before = recipe.evaluate(model)["loss"]
    t = cfg.train.model_copy(
        update={
            "epochs": cp.epochs,
            "lr": cp.lr or cfg.train.lr,
            "early_stopping": EarlyStopping(
                metric="loss", patience=cfg.train.early_stopping.patience
            ),
            "tune_thresholds": False,
        }
    )
    outcome = train_model(t, cfg.seed, model, recipe, out_dir, tracker, check)
    if outcome.resumed_from:
        console.print(f"train: continued pre-training resumed from {outcome.resumed_from}")
    after = recipe.evaluate(outcome.model)["loss"]
    console.print(f"train: held-out masked-LM loss {before:.4f} → {after:.4f}")
    fields = {
        "records": len(records),
        "trained_on": len(items),
        "held_out": len(held),
        "max_length": max_length,
        "truncated": sum(len(x["input_ids"]) >= max_length for x in items),
        "mask_prob": cp.mask_prob,
        "initialised_weights": new_weights,
        "parameters": total,
        "trainable_parameters": trainable,
        "held_out_loss_before": round(before, 4),
        "held_out_loss_after": round(after, 4),
        "model_dir": str(model_dir),
        **outcome.manifest_fields("loss"),
    }
    if is_main_process():
        shutil.rmtree(model_dir, ignore_errors=True)
        save_adapted_encoder(outcome.model, cfg.model.base, tokenizer, model_dir)
        write_json_atomic(out_dir / DONE, fields)
    return fields
