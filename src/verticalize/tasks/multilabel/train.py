"""Multi-label training: a sequence-classification model with one sigmoid output per label
(problem_type multi_label_classification), adapted (full, freeze, layer-drop, LoRA) and
trained on the shared loop; then each label's threshold is tuned on the validation split and
saved beside the model (thresholds.json), so predict and serve decide as evaluation did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from verticalize.config import Config
from verticalize.console import console
from verticalize.data.outputs import read_split
from verticalize.models.adapt import adapt, count_parameters, merged
from verticalize.models.load import load_sequence_classifier
from verticalize.runfolder import RunFolder
from verticalize.tasks.multilabel.encode import EncodedRecords, multilabel_recipe, predict_proba
from verticalize.tasks.multilabel.labels import MultilabelConfig
from verticalize.tasks.multilabel.metrics import tune_thresholds
from verticalize.tasks.multilabel.thresholds import save_thresholds
from verticalize.train.distributed import is_main_process
from verticalize.train.loop import train_model
from verticalize.train.text_model import pass_fields, save_text_model

PROBLEM_TYPE = "multi_label_classification"


def section(cfg: Config) -> MultilabelConfig:
    return cfg.task_section() or MultilabelConfig()


def multilabel_setup(cfg: Config, train_records, val_records, labels: list[str]):
    """(model with a fresh sigmoid head, not adapted; tokenizer; training items; validation
    items; recipe), as training builds them; the planner builds the same."""
    model, tokenizer = load_sequence_classifier(cfg.model.base, labels)
    model.config.problem_type = PROBLEM_TYPE  # saved in config.json: how `detect` knows it
    train_set = EncodedRecords(train_records, tokenizer, labels, cfg.model.max_length)
    set_prior_bias(model, train_set.targets)
    val_set = EncodedRecords(val_records, tokenizer, labels, cfg.model.max_length)
    ml = section(cfg)
    recipe = multilabel_recipe(
        train_set,
        val_set,
        labels,
        tokenizer.pad_token_id,
        cfg.train.eval_batch_size,
        ml.threshold,
        ml.tune_thresholds,
        cfg.seed,
        cfg.train.batch_size,
    )
    return model, tokenizer, train_set, val_set, recipe


def set_prior_bias(model, targets: np.ndarray) -> None:
    """Start each output at its label's training frequency (bias = logit of the share):
    with sparse labels a fresh head at 0.5 spends its first epochs learning that most
    labels are absent, and the rarest labels' gradients drown in that."""
    n_labels = targets.shape[1]
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = [m for m in head if m.out_features == n_labels and m.bias is not None]
    if not head or not len(targets):
        return
    share = np.clip(targets.mean(0), 1e-3, 1 - 1e-3)
    with torch.no_grad():
        head[-1].bias.copy_(torch.from_numpy(np.log(share / (1 - share))).float())


def train_multilabel(
    cfg: Config, folder: RunFolder, out_dir: Path, labels: list[str], tracker=None, check=None
) -> dict:
    """Train, tune thresholds, save model/ (rank 0); return the train manifest's fields."""
    train_records = read_split(cfg, folder.root, "train")
    val_records = read_split(cfg, folder.root, "validation") or train_records
    model, tokenizer, train_set, val_set, recipe = multilabel_setup(
        cfg, train_records, val_records, labels
    )
    model = adapt(model, cfg.model)
    total, trainable = count_parameters(model)
    console.print(
        f"train: {cfg.model.base} ({cfg.model.method}), {trainable:,} of {total:,} parameters "
        f"trainable, {len(train_records)} training records, {len(labels)} labels"
    )
    outcome = train_model(cfg.train, cfg.seed, model, recipe, out_dir, tracker, check)
    model = outcome.model
    if outcome.resumed_from:
        console.print(f"train: resumed from {outcome.resumed_from}")
    ml = section(cfg)
    thresholds = None
    if is_main_process():
        final = merged(model)
        probs = predict_proba(final, val_set, tokenizer.pad_token_id, cfg.train.eval_batch_size)
        cut = (
            tune_thresholds(probs, val_set.targets, ml.threshold)
            if ml.tune_thresholds
            else [ml.threshold] * len(labels)
        )
        save_text_model(final, tokenizer, folder.model_dir, cfg.model.max_length)
        thresholds = save_thresholds(folder.model_dir, labels, cut, ml.tune_thresholds)
        console.print(
            "train: thresholds "
            + ", ".join(f"{k} {v:.2f}" for k, v in thresholds["thresholds"].items())
        )
    return pass_fields(
        cfg,
        train_records,
        train_set.items,
        (total, trainable),
        outcome,
        thresholds=thresholds and thresholds["thresholds"],
    )
